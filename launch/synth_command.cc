// `seqmesh synth`: long-context tasks whose accuracy shows whether a model uses its context.
//
//   seqmesh synth --task passkey|recall --lengths byted-like|github-like|FILE --count N
//                 --max-length L [--min-length 128] [--seed S] --output PREFIX
//
// passkey: filler sentences with "The pass key is 48213. Remember it." hidden at a random depth,
//   ending with the question "What is the pass key? The pass key is 48213" and EOS.
// recall: "key=value" pairs (3-letter keys, 2-digit values), then "Query: key=" and its value.
// Document lengths (bytes = tokens of the byte tokenizer) follow the named distribution, capped
// at --max-length; the answer is always the last 5 (passkey) or 2 (recall) tokens before EOS,
// which is what `seqmesh passkey-eval` scores. Deterministic by seed.
#include <algorithm>
#include <iostream>
#include <random>
#include <string>

#include "launch/command.h"
#include "launch/flags.h"
#include "runtime/check.h"
#include "runtime/indexed_dataset.h"
#include "runtime/tokenizer.h"
#include "scheduler/length_distribution.h"

namespace seqmesh::launch {
namespace {

constexpr const char* kFiller[] = {"The grass is green. ",   "The sky is blue. ",
                                   "The sun is yellow. ",    "Here we go. ",
                                   "There and back again. ", "The river flows to the sea. "};

std::string Digits(std::mt19937_64& rng, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>('0' + rng() % 10);
  return s;
}

std::string Passkey(std::mt19937_64& rng, int64_t length) {
  const std::string key = Digits(rng, 5);
  const std::string needle = "The pass key is " + key + ". Remember it. ";
  const std::string question = "What is the pass key? The pass key is " + key;
  const int64_t room =
      std::max<int64_t>(0, length - static_cast<int64_t>(needle.size() + question.size()));
  std::string filler;
  while (static_cast<int64_t>(filler.size()) < room) filler += kFiller[rng() % 6];
  filler.resize(room);
  const size_t depth = room ? rng() % (room + 1) : 0;
  return filler.substr(0, depth) + needle + filler.substr(depth) + question;
}

std::string Recall(std::mt19937_64& rng, int64_t length) {
  std::string text, query_key, query_value;
  int pairs = 0;
  while (static_cast<int64_t>(text.size()) + 20 < length || pairs < 2) {
    std::string key;
    for (int i = 0; i < 3; ++i) key += static_cast<char>('a' + rng() % 26);
    const std::string value = Digits(rng, 2);
    text += key + "=" + value + " ";
    if (rng() % (pairs + 1) == 0) query_key = key, query_value = value;  // reservoir choice
    ++pairs;
  }
  // A later duplicate key would make the answer ambiguous: the query asks for the first pair
  // with that key, and keys repeat rarely (26^3).
  const size_t at = text.find(query_key + "=");
  query_value = text.substr(at + 4, 2);
  return text + "Query: " + query_key + "=" + query_value;
}

}  // namespace

int RunSynth(const Args& args) {
  std::string task, lengths, output;
  int64_t count = 0, max_length = 0, min_length = 128;
  int64_t seed = 1;
  FlagParser flags("synth", "generate long-context tasks (passkey retrieval, associative recall)",
                   "seqmesh synth --task passkey --lengths github-like --count 200 "
                   "--max-length 4096 --output data/passkey");
  flags.String("--task", "passkey|recall", &task, "which task", Required::kYes)
      .String("--lengths", "NAME|FILE", &lengths,
              "document lengths: byted-like, github-like, a lengths file or a .idx index",
              Required::kYes)
      .Int("--count", "N", &count, "documents to write", 1, Required::kYes)
      .Int("--max-length", "L", &max_length, "the longest document, in tokens", 96, Required::kYes)
      .Int("--min-length", "L", &min_length, "the shortest document, in tokens", 96)
      .Int("--seed", "S", &seed, "random seed (the output is deterministic by seed)", 0)
      .String("--output", "PREFIX", &output, "write PREFIX.bin and PREFIX.idx", Required::kYes);
  if (!flags.Parse(args)) return 0;
  SM_CHECK(task == "passkey" || task == "recall")
      << "--task must be passkey or recall, got '" << task << "'";
  SM_CHECK(!lengths.empty() && !output.empty()) << "--lengths and --output are required";
  SM_CHECK(count >= 1) << "--count must be >= 1";
  SM_CHECK(max_length >= min_length && min_length >= 96)
      << "need 96 <= --min-length <= --max-length (got " << min_length << ", " << max_length << ")";
  const auto dist = scheduler::LengthDistribution::FromArgument(lengths);
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  ByteTokenizer tok;
  IndexedDatasetWriter writer(output, TokenDType::kU16);
  std::vector<int32_t> ids;
  int64_t tokens = 0;
  for (int64_t d = 0; d < count; ++d) {
    const int64_t len = std::clamp<int64_t>(dist.Sample(rng), min_length, max_length) - 1;  // EOS
    const std::string text = task == "passkey" ? Passkey(rng, len) : Recall(rng, len);
    ids.clear();
    tok.Encode(text, ids);
    ids.push_back(tok.eos());
    writer.Add(ids);
    tokens += static_cast<int64_t>(ids.size());
  }
  writer.Finish();
  std::cout << "synth: " << count << " " << task << " documents, " << tokens << " tokens -> "
            << output << ".bin/.idx\n";
  return 0;
}

}  // namespace seqmesh::launch
