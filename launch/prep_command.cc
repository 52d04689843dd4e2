// `seqmesh prep`: text or JSONL files to a Megatron indexed dataset with the byte tokenizer.
//
//   seqmesh prep --output data/docs [--jsonl] [--no-eos] FILE...
//
// A text file is one document; a JSONL file holds one document per line in its "text" field.
// Each document gets an EOS token at its end (unless --no-eos), like Megatron's --append-eod.
#include <fstream>
#include <iostream>
#include <sstream>

#include "launch/command.h"
#include "runtime/check.h"
#include "runtime/indexed_dataset.h"
#include "runtime/json.h"
#include "runtime/tokenizer.h"

namespace seqmesh::launch {

int RunPrep(const Args& args) {
  std::string output;
  bool jsonl = false, eos = true;
  std::vector<std::string> inputs;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help") {
      std::cout << "usage: seqmesh prep --output PREFIX [--jsonl] [--no-eos] FILE...\n";
      return 0;
    }
    if (args[i] == "--output") {
      SM_CHECK(i + 1 < args.size()) << "--output needs a prefix";
      output = args[++i];
    } else if (args[i] == "--jsonl") {
      jsonl = true;
    } else if (args[i] == "--no-eos") {
      eos = false;
    } else {
      SM_CHECK(args[i].rfind("--", 0) != 0) << "unknown flag " << args[i];
      inputs.push_back(args[i]);
    }
  }
  SM_CHECK(!output.empty()) << "missing --output PREFIX";
  SM_CHECK(!inputs.empty()) << "no input files";
  ByteTokenizer tok;
  IndexedDatasetWriter writer(output, TokenDType::kU16);
  int64_t docs = 0, tokens = 0;
  std::vector<int32_t> ids;
  auto add = [&](std::string_view text) {
    ids.clear();
    tok.Encode(text, ids);
    if (eos) ids.push_back(tok.eos());
    if (ids.empty()) return;
    writer.Add(ids);
    ++docs;
    tokens += static_cast<int64_t>(ids.size());
  };
  for (const std::string& path : inputs) {
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
  std::cout << "prep: " << docs << " documents, " << tokens << " tokens -> " << output
            << ".bin/.idx (byte tokenizer, vocab " << tok.vocab_size() << ")\n";
  return 0;
}

}  // namespace seqmesh::launch
