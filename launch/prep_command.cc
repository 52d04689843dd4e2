// `seqmesh prep`: text or JSONL files to a Megatron indexed dataset.
//
//   seqmesh prep --output data/docs [--tokenizer byte|FILE|DIR] [--jsonl] [--no-eos]
//                [--max-length L] [--threads N] FILE...
//
// --tokenizer takes a tokenizer.json (or a Hugging Face model directory holding one, with its
// tokenizer_config.json for BOS/EOS) or a .tiktoken rank file; the default is the byte tokenizer.
// The token dtype follows Megatron's rule (uint16 below 65,500 ids, else int32). Each document is
// the tokenizer's own prefix (Llama's BOS), the text's ids, and EOS (unless --no-eos, like
// Megatron's --append-eod). PREFIX.dataset.json records the tokenizer (runtime/dataset_card.h), so
// that `train` and `launch` refuse a model whose vocabulary is not the one the ids came from.
//
// --max-length L cuts every document into consecutive pieces of at most L tokens, each a
// document of its own, and reports how many were cut: an HDP job refuses a sequence longer than
// its ranks can hold (ranks x capacity), so the cut is made, and counted, here.
// A text file is one document; a JSONL file holds one document per line in its "text" field. A
// directory stands for every regular file below it (sorted, so the output is reproducible).
// Documents are tokenized by --threads threads in batches and written in input order: the output
// is the same for every thread count.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <span>
#include <sstream>
#include <thread>

#include "launch/command.h"
#include "launch/flags.h"
#include "runtime/check.h"
#include "runtime/dataset_card.h"
#include "runtime/indexed_dataset.h"
#include "runtime/json.h"
#include "runtime/tokenizer.h"

namespace seqmesh::launch {
namespace {

struct PrepOptions {
  std::string output, tokenizer = "byte";
  bool jsonl = false, eos = true;
  int64_t max_length = 0, threads = 1;
  std::vector<std::string> files;  // folders expanded
};

struct PrepStats {
  int64_t bytes = 0, docs = 0, tokens = 0, cut = 0;
  TokenDType dtype = TokenDType::kU16;
  TokenizerIdentity tokenizer;
};

// Megatron's DType.optimal_dtype: uint16 for a vocabulary under 65,500 ids, else int32.
TokenDType TokenDTypeFor(int64_t vocab_size) {
  return vocab_size < 65500 ? TokenDType::kU16 : TokenDType::kI32;
}

// Reads the documents of `files` in order and hands them to `batch` in groups of about 32 MB.
template <typename Batch>
void ForEachBatch(const PrepOptions& o, Batch batch) {
  constexpr size_t kBatchBytes = size_t{32} << 20;
  std::vector<std::string> texts;
  size_t held = 0;
  auto add = [&](std::string text) {
    held += text.size();
    texts.push_back(std::move(text));
    if (held >= kBatchBytes) batch(texts), texts.clear(), held = 0;
  };
  for (const std::string& path : o.files) {
    std::ifstream in(path, std::ios::binary);
    SM_CHECK(in.good()) << "cannot read '" << path << "'";
    if (!o.jsonl) {
      std::stringstream ss;
      ss << in.rdbuf();
      add(ss.str());
      continue;
    }
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = "'" + path + "' line " + std::to_string(n);
      const Json j = Json::Parse(line, where);
      const Json* text = j.Find("text");
      SM_CHECK(text != nullptr) << where << " has no \"text\" field";
      add(text->AsString(where + " text"));
    }
  }
  if (!texts.empty()) batch(texts);
}

PrepStats Prep(const PrepOptions& o) {
  const std::unique_ptr<Tokenizer> tok = LoadTokenizer(o.tokenizer);
  PrepStats stats;
  stats.tokenizer = IdentifyTokenizer(o.tokenizer, *tok);
  stats.dtype = TokenDTypeFor(tok->vocab_size());
  SM_CHECK(!o.eos || tok->eos() >= 0)
      << "the tokenizer '" << o.tokenizer << "' has no EOS token: pass --no-eos";
  const std::vector<int32_t> prefix = tok->DocumentPrefix();
  IndexedDatasetWriter writer(o.output, stats.dtype);
  int32_t max_id = -1;
  std::vector<std::vector<int32_t>> ids;
  ForEachBatch(o, [&](const std::vector<std::string>& texts) {
    // Encode in parallel: each thread takes the next document; the results keep their order.
    ids.assign(texts.size(), {});
    std::atomic<size_t> next{0};
    std::exception_ptr failure;
    std::atomic<bool> failed{false};
    auto work = [&] {
      try {
        for (size_t i; !failed && (i = next++) < texts.size();) {
          ids[i] = prefix;
          tok->Encode(texts[i], ids[i]);
          if (o.eos) ids[i].push_back(tok->eos());
        }
      } catch (...) {
        if (!failed.exchange(true)) failure = std::current_exception();
      }
    };
    std::vector<std::thread> pool;
    const size_t n_threads = std::min<size_t>(o.threads, texts.size());
    for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
    if (failure) std::rethrow_exception(failure);
    for (size_t i = 0; i < texts.size(); ++i) {
      stats.bytes += static_cast<int64_t>(texts[i].size());
      const std::vector<int32_t>& doc = ids[i];
      if (doc.empty()) continue;
      for (const int32_t id : doc) max_id = std::max(max_id, id);
      const int64_t n = static_cast<int64_t>(doc.size());
      const int64_t piece = o.max_length > 0 ? o.max_length : n;
      if (n > piece) ++stats.cut;
      for (int64_t begin = 0; begin < n; begin += piece) {
        writer.Add(std::span<const int32_t>(doc.data() + begin, std::min(piece, n - begin)));
        ++stats.docs;
      }
      stats.tokens += n;
    }
  });
  writer.Finish();
  WriteDatasetCard(o.output, {stats.tokenizer, stats.docs, stats.tokens, max_id});
  return stats;
}

}  // namespace

int RunPrep(const Args& args) {
  PrepOptions o;
  std::vector<std::string> inputs;
  o.threads = std::max(1u, std::thread::hardware_concurrency());
  FlagParser flags("prep", "tokenize text or JSONL files into a Megatron indexed dataset",
                   "seqmesh prep --max-length 4096 --output data/example/hdp data/example/text");
  flags
      .String("--output", "PREFIX", &o.output,
              "write PREFIX.bin, PREFIX.idx and PREFIX.dataset.json", Required::kYes)
      .String("--tokenizer", "PATH", &o.tokenizer,
              "byte (the default), a tokenizer.json or a folder holding one, or a .tiktoken file")
      .Switch("--jsonl", &o.jsonl, "the inputs are JSON lines with a \"text\" field")
      .Unset("--no-eos", &o.eos, "do not end each document with the EOS token")
      .Int("--max-length", "L", &o.max_length,
           "cut documents into pieces of at most L tokens (0: never cut)", 2)
      .Int("--threads", "N", &o.threads, "tokenize with N threads (default: one per core)", 1)
      .Positional("FILE", &inputs, "text or JSONL files, or folders of them", Required::kYes);
  if (!flags.Parse(args)) return 0;
  for (const std::string& in : inputs) {
    if (!std::filesystem::is_directory(in)) {
      o.files.push_back(in);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::recursive_directory_iterator(in))
      if (e.is_regular_file()) found.push_back(e.path().string());
    std::sort(found.begin(), found.end());
    o.files.insert(o.files.end(), found.begin(), found.end());
  }
  // Never write over an input: the outputs are replaced wholesale.
  for (const std::string& out :
       std::vector<std::string>{o.output + ".bin", o.output + ".idx", DatasetCardPath(o.output)}) {
    std::vector<std::string> read = o.files;
    read.push_back(std::filesystem::is_directory(o.tokenizer)
                       ? (std::filesystem::path(o.tokenizer) / "tokenizer.json").string()
                       : o.tokenizer);
    for (const std::string& in : read)
      SM_CHECK(!std::filesystem::exists(in) || !std::filesystem::exists(out) ||
               !std::filesystem::equivalent(in, out))
          << "--output " << o.output << " would overwrite the input '" << in
          << "': choose another output prefix";
  }
  const auto start = std::chrono::steady_clock::now();
  const PrepStats s = Prep(o);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "prep: " << s.docs << " documents, " << s.tokens << " tokens -> " << o.output
            << ".bin/.idx/.dataset.json (" << s.tokenizer.Describe() << ", "
            << (s.dtype == TokenDType::kU16 ? "uint16" : "int32") << " ids)";
  if (o.max_length > 0)
    std::cout << "; " << s.cut << " documents longer than " << o.max_length << " tokens were cut";
  std::cout << "\n"
            << "prep_mb_per_s: " << s.bytes / 1e6 / secs << "  (" << s.bytes / 1e6
            << " MB of text in " << secs << " s on " << o.threads
            << " threads, reading, tokenizing and writing included)\n";
  return 0;
}

}  // namespace seqmesh::launch
