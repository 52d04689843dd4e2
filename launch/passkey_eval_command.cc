// `seqmesh passkey-eval --model DIR --data PREFIX [--answer-tokens 5] [--last N] [--threads 2]`
//
// Scores a model on `seqmesh synth` documents: for each of the last N sequences of the dataset
// (the held-out part when training used data.validation_fraction), the answer is the
// `answer-tokens` tokens before the final EOS; a document counts as retrieved when the model's
// argmax prediction (teacher-forced: each answer token predicted from the true prefix) matches
// every answer token. Prints the exact-match accuracy and the per-token accuracy.
#include <algorithm>
#include <iostream>

#include "launch/command.h"
#include "launch/flags.h"
#include "launch/hf_model.h"
#include "runtime/check.h"
#include "runtime/indexed_dataset.h"
#include "runtime/layers.h"

namespace seqmesh::launch {

int RunPasskeyEval(const Args& args) {
  std::string model_dir, data;
  int64_t answer = 5, last = 200, threads = 2;
  FlagParser flags("passkey-eval", "score a model's retrieval on synth documents",
                   "seqmesh passkey-eval --model runs/passkey/step-00000300 "
                   "--data data/passkey");
  flags
      .String("--model", "DIR", &model_dir, "a Hugging Face model directory (a checkpoint)",
              Required::kYes)
      .String("--data", "PREFIX", &data, "the synth dataset", Required::kYes)
      .Int("--answer-tokens", "K", &answer, "the answer's tokens before EOS", 1)
      .Int("--last", "N", &last, "score the last N documents", 1)
      .Int("--threads", "T", &threads, "CPU threads", 1);
  if (!flags.Parse(args)) return 0;
  const IndexedDataset ds = IndexedDataset::Open(data);
  const int64_t n = ds.num_sequences();
  const int64_t first = std::max<int64_t>(0, n - last);
  int64_t longest = 1;
  for (int64_t i = first; i < n; ++i) longest = std::max<int64_t>(longest, ds.Length(i));
  const HfModelDir m = ReadHfModelDir(model_dir);
  const ModelConfig& config = m.config;
  Model model = LoadHfModel(m, longest, static_cast<int>(threads));

  int64_t exact = 0, correct_tokens = 0, docs = 0;
  std::vector<int32_t> tokens, targets;
  std::vector<float> logits(static_cast<size_t>(longest) * config.vocab);
  for (int64_t s = first; s < n; ++s) {
    tokens.clear();
    ds.Read(s, tokens);
    const int64_t len = static_cast<int64_t>(tokens.size());
    SM_CHECK(len > answer + 1) << "sequence " << s << " is too short for a " << answer
                               << "-token answer";
    NextTokenTargets(tokens, kIgnoreIndex, targets);
    const int32_t cu[2] = {0, static_cast<int32_t>(len)};
    Batch b{tokens.data(), targets.data(), cu, 1, len};
    model.Forward(b, 1.0f, logits.data());
    bool all = true;
    for (int64_t k = len - 1 - answer; k < len - 1; ++k) {
      const float* row = logits.data() + (k - 1) * config.vocab;  // predicts token k
      const int32_t guess = static_cast<int32_t>(std::max_element(row, row + config.vocab) - row);
      const bool ok = guess == tokens[k];
      correct_tokens += ok;
      all = all && ok;
    }
    exact += all;
    ++docs;
  }
  std::cout << "passkey_eval: documents " << docs << "  exact_match " << exact << "/" << docs
            << " = " << static_cast<double>(exact) / docs << "  token_accuracy "
            << static_cast<double>(correct_tokens) / (docs * answer) << "\n";
  return 0;
}

}  // namespace seqmesh::launch
