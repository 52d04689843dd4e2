#include "runtime/generation.h"

#include <chrono>

#include "runtime/check.h"

namespace seqmesh {

const char* StopReasonName(StopReason reason) {
  return reason == StopReason::kStopId ? "eos" : "max_new_tokens";
}

Generation Generate(Model& model, std::span<const int32_t> prompt,
                    const GenerationOptions& options) {
  using Clock = std::chrono::steady_clock;
  const int64_t n = static_cast<int64_t>(prompt.size());
  SM_CHECK(n >= 1) << "the prompt is empty; generation needs at least one token";
  SM_CHECK(options.max_new_tokens >= 1)
      << "max_new_tokens must be >= 1, got " << options.max_new_tokens;
  const int64_t vocab = model.config().vocab, chunk = model.options().max_tokens;
  Sampler sampler(options.sampling);
  // The last generated token is never decoded, so it needs no cache row.
  KvCache cache(model.config(), n + options.max_new_tokens - 1);
  std::vector<float> logits(vocab);
  Generation g;
  g.ids.reserve(options.max_new_tokens);
  g.cache_bytes = cache.bytes();
  const Clock::time_point start = Clock::now();
  for (int64_t i = 0; i < n; i += chunk)
    model.Decode(prompt.subspan(i, std::min(chunk, n - i)), cache, logits.data());
  const Clock::time_point prefilled = Clock::now();
  for (;;) {
    const int32_t next = sampler.Next(logits);
    g.ids.push_back(next);
    if (next == options.stop_id) {
      g.stop = StopReason::kStopId;
      break;
    }
    if (static_cast<int64_t>(g.ids.size()) == options.max_new_tokens) break;
    model.Decode(std::span<const int32_t>(&g.ids.back(), 1), cache, logits.data());
  }
  g.prefill_seconds = std::chrono::duration<double>(prefilled - start).count();
  g.decode_seconds = std::chrono::duration<double>(Clock::now() - prefilled).count();
  return g;
}

}  // namespace seqmesh
