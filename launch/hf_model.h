// A Hugging Face model directory opened for inference, one way for `seqmesh generate`, `eval` and
// `passkey-eval` (training reads --init-from through the Trainer): its config, its
// max_position_embeddings, the model with its weights, and the tokenizer that goes with it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/model.h"
#include "runtime/tokenizer.h"

namespace seqmesh::launch {

struct HfModelDir {
  std::string dir;
  ModelConfig config;
  int64_t max_positions = 0;  // max_position_embeddings; 0: config.json names none
};

// Reads DIR/config.json. A directory that does not exist or has no config.json is one error
// naming it (for a seqmesh run directory, its latest step-N checkpoint, which is one).
HfModelDir ReadHfModelDir(const std::string& dir);

// The model for inference (no gradients, one set of layer activations) with activations for
// `max_tokens` tokens per call and the directory's weights, on `threads` CPU threads.
Model LoadHfModel(const HfModelDir& m, int64_t max_tokens, int threads);

// The tokenizer of the model in `m`: `path` when given (--tokenizer), else the directory's own
// (tokenizer.json, with its tokenizer_config.json, or a .tiktoken file), else seqmesh's byte
// tokenizer when the model's vocab is 259; otherwise an error asking for --tokenizer. A tokenizer
// with more ids than the model's vocab is an error. `source` (may be null) gets what was loaded.
std::unique_ptr<Tokenizer> LoadModelTokenizer(const HfModelDir& m, const std::string& path,
                                              std::string* source = nullptr);

// Next-token targets of `tokens` (one document or a window of one): targets[i] = tokens[i + 1],
// and the last target is `next` (the token after the window, kIgnoreIndex at a document's end).
void NextTokenTargets(std::span<const int32_t> tokens, int32_t next, std::vector<int32_t>& targets);

}  // namespace seqmesh::launch
