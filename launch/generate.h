// `seqmesh generate`'s work, callable without the command line (the Python package's generate()):
// a Hugging Face model directory and its tokenizer (launch/hf_model.h), the prompt encoded as a
// document starts (the tokenizer's DocumentPrefix, e.g. Llama's BOS, then the text's ids), and
// runtime/generation.h's loop with a KV cache until the tokenizer's EOS or max_new_tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/generation.h"
#include "runtime/json.h"

namespace seqmesh::launch {

struct GenerateRequest {
  std::string model_dir;
  std::string prompt;
  std::string tokenizer;  // "": the model directory's (LoadModelTokenizer)
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  int threads = 2;
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;  // what the model read: the document prefix and the prompt
  std::vector<int32_t> ids;         // the new tokens (the EOS last when it stopped there)
  std::string text;                 // ids decoded (special ids dropped; bad UTF-8 as U+FFFD)
  std::string tokenizer;            // what LoadModelTokenizer loaded
  StopReason stop = StopReason::kMaxNewTokens;
  double prefill_tokens_per_s = 0;  // prompt tokens / prefill time
  double decode_tokens_per_s = 0;   // new tokens after the first / their time
  // {"prompt_ids", "ids", "text", "stop", "prompt_tokens", "new_tokens", "prefill_tokens_per_s",
  //  "decode_tokens_per_s", "tokenizer"}
  Json ToJson() const;
};

// Errors (one line each): a missing model directory, a tokenizer that cannot be found or does not
// fit the model, an empty prompt, a prompt plus max_new_tokens longer than the model's
// max_position_embeddings, bad sampling options.
GenerateResult GenerateText(const GenerateRequest& request);

}  // namespace seqmesh::launch
