// What a dataset records beside its Megatron files: `PREFIX.dataset.json`, written by `seqmesh
// prep`, names the tokenizer that made the ids (so a model with another vocabulary is refused
// before it trains on them) and the largest id in it. Megatron's .idx has no room for either; its
// readers ignore the extra file.
//
//   {"format": "seqmesh-dataset/1",
//    "tokenizer": {"kind": "byte" | "tiktoken" | "tokenizer.json", "file": "tokenizer.json",
//                  "fnv1a64": "0123456789abcdef", "vocab_size": 128256, "bos": 128000,
//                  "eos": 128001},
//    "documents": 12, "tokens": 34567, "max_token_id": 128001,
//    "loss_mask": false, "trained_tokens": 34567, "chat_format": ""}
//
// With `loss_mask` (prep --chat), PREFIX.loss_mask.bin/.idx is a second Megatron dataset of the
// same sequences with one uint8 per token: 1 where the token is trained on as a next-token
// target (a completion, an assistant turn and its end-of-turn token), 0 where it is not (the
// prompt, the template's headers). `trained_tokens` counts the 1s.
//
// `fnv1a64` hashes the tokenizer file's bytes (0 for the byte tokenizer): two tokenizers are the
// same when kind and hash are.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "runtime/tokenizer.h"

namespace seqmesh {

struct TokenizerIdentity {
  std::string kind;  // "byte", "tiktoken" or "tokenizer.json"
  std::string file;  // the file's name (not its folder), "" for the byte tokenizer
  uint64_t fnv1a64 = 0;
  int64_t vocab_size = 0;
  int32_t bos = -1, eos = -1;

  bool SameAs(const TokenizerIdentity& o) const { return kind == o.kind && fnv1a64 == o.fnv1a64; }
  std::string Describe() const;  // "tokenizer.json 'tokenizer.json' (vocab 32000, fnv1a64 ...)"
};

// The identity of the tokenizer LoadTokenizer(path) loaded as `t`.
TokenizerIdentity IdentifyTokenizer(const std::string& path, const Tokenizer& t);
// Kind, file and hash only, of a tokenizer file (tokenizer.json or .tiktoken), without loading it.
TokenizerIdentity IdentifyTokenizerFile(const std::string& file);

// The tokenizer file a Hugging Face model directory ships (tokenizer.json, else one .tiktoken
// file), or "" when it has none.
std::string TokenizerFileIn(const std::string& dir);

struct DatasetCard {
  TokenizerIdentity tokenizer;
  int64_t documents = 0, tokens = 0;
  int32_t max_token_id = -1;
  bool loss_mask = false;
  int64_t trained_tokens = 0;
  std::string chat_format;  // the chat template prep rendered with, "" for plain text
};

std::string DatasetCardPath(const std::string& prefix);  // PREFIX.dataset.json
std::string LossMaskPrefix(const std::string& prefix);   // PREFIX.loss_mask
void WriteDatasetCard(const std::string& prefix, const DatasetCard& card);
// nullopt when PREFIX.dataset.json does not exist (a dataset made before cards, or by Megatron); a
// malformed card is an error naming the file and the field.
std::optional<DatasetCard> ReadDatasetCard(const std::string& prefix);

}  // namespace seqmesh
