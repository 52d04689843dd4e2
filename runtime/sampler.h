// Sampler: the next token from one row of logits, as Hugging Face's generate() chooses it.
//
//   temperature == 0: greedy, the argmax (the lowest id among equal maxima).
//   otherwise: probabilities softmax(logits / temperature) (in double), restricted to the top_k
//   most likely ids (0: all), then to the nucleus (top_p) of those: the most likely, in order of
//   probability (ties by id), up to and including the first whose cumulative share of the top-k
//   mass reaches top_p; renormalized, then one draw from a splitmix64 stream seeded by `seed`.
//   The most likely id always stays, so top_p -> 0 (or top_k = 1) is greedy.
//
// The same seed and logits give the same ids on any machine and thread count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace seqmesh {

struct SamplingOptions {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;        // (0, 1]
  int64_t top_k = 0;         // 0: no limit
  uint64_t seed = 0;
  void Validate() const;  // errors name the flag's field: temperature >= 0, top_p in (0, 1]...
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);

  int32_t Next(std::span<const float> logits);
  const SamplingOptions& options() const { return options_; }

 private:
  double Uniform();  // [0, 1)

  SamplingOptions options_;
  uint64_t state_;
  std::vector<int32_t> order_;  // ids by decreasing probability (scratch, sized once)
  std::vector<double> probs_;
};

// The argmax of a row (the lowest id among equal maxima).
int32_t Greedy(std::span<const float> logits);

}  // namespace seqmesh
