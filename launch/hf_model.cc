#include "launch/hf_model.h"

#include <algorithm>
#include <filesystem>

#include "runtime/check.h"
#include "runtime/dataset_card.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/layers.h"

namespace seqmesh::launch {

namespace fs = std::filesystem;

HfModelDir ReadHfModelDir(const std::string& dir) {
  SM_CHECK(fs::is_directory(dir)) << "the model directory '" << dir << "' does not exist"
                                  << (fs::exists(dir) ? " (it is a file)" : "")
                                  << "; pass a Hugging Face directory (config.json and "
                                     "model.safetensors), e.g. a run's step-N checkpoint";
  const std::string config = (fs::path(dir) / "config.json").string();
  if (!fs::exists(config)) {
    // A run directory: its checkpoints are the Hugging Face directories.
    std::string last_step;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("step-", 0) == 0 && fs::exists(e.path() / "config.json"))
        last_step = std::max(last_step, name);
    }
    SM_CHECK(false) << "the model directory '" << dir << "' has no config.json; "
                    << (last_step.empty()
                            ? "pass a Hugging Face directory (config.json and model.safetensors)"
                            : "it is a run directory: pass one of its checkpoints, e.g. '" +
                                  (fs::path(dir) / last_step).string() + "'");
  }
  HfModelDir m;
  m.dir = dir;
  m.config = ReadHfConfig(config);
  m.max_positions = ReadHfMaxPositions(config);
  return m;
}

Model LoadHfModel(const HfModelDir& m, int64_t max_tokens, int threads) {
  ModelOptions options;
  options.max_tokens = max_tokens;
  options.gradients = false;  // inference: half the memory of a trainable model, and less
  options.backend = MakeBackend(Device::kCpu, ExecutionContext{threads});
  Model model(m.config, options);
  LoadHfWeights(model, m.dir);
  return model;
}

std::unique_ptr<Tokenizer> LoadModelTokenizer(const HfModelDir& m, const std::string& path,
                                              std::string* source) {
  std::string chosen = path;
  if (chosen.empty()) {
    const std::string file = TokenizerFileIn(m.dir);
    // A directory's tokenizer.json is loaded through the directory: its tokenizer_config.json
    // names BOS and EOS.
    if (!file.empty())
      chosen = fs::path(file).filename() == "tokenizer.json" ? m.dir : file;
    else if (m.config.vocab == ByteTokenizer().vocab_size())
      chosen = "byte";
  }
  SM_CHECK(!chosen.empty()) << "the model directory '" << m.dir
                            << "' has no tokenizer (tokenizer.json or a .tiktoken file) and its "
                               "vocab_size "
                            << m.config.vocab
                            << " is not the byte tokenizer's 259: pass --tokenizer PATH";
  SM_CHECK(chosen == "byte" || fs::exists(chosen))
      << "the tokenizer '" << chosen << "' does not exist; pass --tokenizer byte, a "
      << "tokenizer.json (or a directory holding one) or a .tiktoken file";
  std::unique_ptr<Tokenizer> t = LoadTokenizer(chosen);
  SM_CHECK(t->vocab_size() <= m.config.vocab)
      << "the tokenizer '" << chosen << "' has " << t->vocab_size() << " ids but the model in '"
      << m.dir << "' has vocab_size " << m.config.vocab << ": pass the model's own --tokenizer";
  if (source) *source = chosen;
  return t;
}

void NextTokenTargets(std::span<const int32_t> tokens, int32_t next,
                      std::vector<int32_t>& targets) {
  const size_t n = tokens.size();
  targets.resize(n);
  for (size_t i = 0; i + 1 < n; ++i) targets[i] = tokens[i + 1];
  if (n > 0) targets[n - 1] = next;
}

}  // namespace seqmesh::launch
