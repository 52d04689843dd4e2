// `seqmesh prep`: text or JSONL files to a Megatron indexed dataset with the byte tokenizer.
//
//   seqmesh prep --output data/docs [--jsonl] [--no-eos] [--max-length L] FILE...
//
// --max-length L cuts every document into consecutive pieces of at most L tokens (EOS included
// in the last), each a document of its own, and reports how many were cut: an HDP job refuses a
// sequence longer than its ranks can hold (ranks x capacity), so the cut is made, and counted,
// here.
// A text file is one document; a JSONL file holds one document per line in its "text" field. A
// directory stands for every regular file below it (sorted, so the output is reproducible).
// Each document gets an EOS token at its end (unless --no-eos), like Megatron's --append-eod.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <span>
#include <sstream>

#include "launch/command.h"
#include "launch/flags.h"
#include "runtime/check.h"
#include "runtime/indexed_dataset.h"
#include "runtime/json.h"
#include "runtime/tokenizer.h"

namespace seqmesh::launch {

int RunPrep(const Args& args) {
  std::string output;
  bool jsonl = false, eos = true;
  int64_t max_length = 0;
  std::vector<std::string> inputs;
  FlagParser flags("prep", "tokenize text or JSONL files into a Megatron indexed dataset",
                   "seqmesh prep --max-length 4096 --output data/example/hdp data/example/text");
  flags.String("--output", "PREFIX", &output, "write PREFIX.bin and PREFIX.idx", Required::kYes)
      .Switch("--jsonl", &jsonl, "the inputs are JSON lines with a \"text\" field")
      .Unset("--no-eos", &eos, "do not end each document with the EOS token")
      .Int("--max-length", "L", &max_length,
           "cut documents into pieces of at most L tokens (0: never cut)", 2)
      .Positional("FILE", &inputs, "text or JSONL files, or folders of them", Required::kYes);
  if (!flags.Parse(args)) return 0;
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    if (!std::filesystem::is_directory(in)) {
      files.push_back(in);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::recursive_directory_iterator(in))
      if (e.is_regular_file()) found.push_back(e.path().string());
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  const auto start = std::chrono::steady_clock::now();
  int64_t bytes = 0;
  ByteTokenizer tok;
  IndexedDatasetWriter writer(output, TokenDType::kU16);
  int64_t docs = 0, tokens = 0, cut = 0;
  std::vector<int32_t> ids;
  auto add = [&](std::string_view text) {
    bytes += static_cast<int64_t>(text.size());
    ids.clear();
    tok.Encode(text, ids);
    if (eos) ids.push_back(tok.eos());
    if (ids.empty()) return;
    const int64_t n = static_cast<int64_t>(ids.size());
    const int64_t piece = max_length > 0 ? max_length : n;
    if (n > piece) ++cut;
    for (int64_t begin = 0; begin < n; begin += piece) {
      writer.Add(std::span<const int32_t>(ids.data() + begin, std::min(piece, n - begin)));
      ++docs;
    }
    tokens += n;
  };
  for (const std::string& path : files) {
    std::ifstream in(path, std::ios::binary);
    SM_CHECK(in.good()) << "cannot read '" << path << "'";
    if (!jsonl) {
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
  writer.Finish();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "prep: " << docs << " documents, " << tokens << " tokens -> " << output
            << ".bin/.idx (byte tokenizer, vocab " << tok.vocab_size() << ")";
  if (max_length > 0)
    std::cout << "; " << cut << " documents longer than " << max_length << " tokens were cut";
  std::cout << "\n"
            << "prep_mb_per_s: " << bytes / 1e6 / secs << "  (" << bytes / 1e6 << " MB of text in "
            << secs << " s, reading, tokenizing and writing included)\n";
  return 0;
}

}  // namespace seqmesh::launch
