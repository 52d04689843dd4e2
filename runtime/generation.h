// Generation: a prompt through Model::Decode with a KvCache, then one sampled token at a time
// until the stop id or max_new_tokens. The loop of `seqmesh generate` (launch/generate.h adds
// the tokenizer and the model directory); compute only, no text.
//
//   prefill: the prompt in pieces of at most model.options().max_tokens, keeping the last logits
//   decode:  sample a token from the last logits; stop on stop_id (kept in ids) or when
//            max_new_tokens are out; otherwise Decode it (one token) for the next logits
//
// The cache is planned once for prompt + max_new_tokens positions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/model.h"
#include "runtime/sampler.h"

namespace seqmesh {

struct GenerationOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  int32_t stop_id = -1;  // the tokenizer's EOS; -1: none
};

enum class StopReason { kStopId, kMaxNewTokens };
const char* StopReasonName(StopReason reason);  // "eos", "max_new_tokens"

struct Generation {
  std::vector<int32_t> ids;  // the new tokens; the stop id is the last when it stopped there
  StopReason stop = StopReason::kMaxNewTokens;
  double prefill_seconds = 0;  // the prompt through the model (its logits included)
  double decode_seconds = 0;   // every later token: Decode and sampling
  size_t cache_bytes = 0;
};

// The prompt must hold at least one token; max_new_tokens >= 1.
Generation Generate(Model& model, std::span<const int32_t> prompt,
                    const GenerationOptions& options);

}  // namespace seqmesh
