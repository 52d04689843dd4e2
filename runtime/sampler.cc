#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "runtime/check.h"

namespace seqmesh {

void SamplingOptions::Validate() const {
  SM_CHECK(std::isfinite(temperature) && temperature >= 0)
      << "temperature must be >= 0 (0: greedy), got " << temperature;
  SM_CHECK(top_p > 0 && top_p <= 1) << "top_p must be in (0, 1], got " << top_p;
  SM_CHECK(top_k >= 0) << "top_k must be >= 0 (0: no limit), got " << top_k;
}

int32_t Greedy(std::span<const float> logits) {
  SM_CHECK(!logits.empty()) << "sampling from an empty row of logits";
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingOptions& options) : options_(options), state_(options.seed) {
  options_.Validate();
}

double Sampler::Uniform() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int32_t Sampler::Next(std::span<const float> logits) {
  if (options_.temperature == 0) return Greedy(logits);
  const int64_t v = static_cast<int64_t>(logits.size());
  SM_CHECK(v >= 1) << "sampling from an empty row of logits";
  order_.resize(v);
  probs_.resize(v);
  const double max = logits[Greedy(logits)];
  const double inv_t = 1.0 / options_.temperature;
  for (int64_t i = 0; i < v; ++i) {
    probs_[i] = std::exp((logits[i] - max) * inv_t);
  }
  for (int64_t i = 0; i < v; ++i) order_[i] = static_cast<int32_t>(i);
  // Only the ids that can survive top_k need ordering; all of them for top_p alone.
  const int64_t k = options_.top_k > 0 ? std::min(options_.top_k, v) : v;
  auto more_likely = [&](int32_t a, int32_t b) {
    return probs_[a] != probs_[b] ? probs_[a] > probs_[b] : a < b;
  };
  std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), more_likely);
  // The nucleus within the top k (renormalized, as Hugging Face applies top_k before top_p): the
  // shortest prefix whose share of their mass reaches top_p.
  double top_k_mass = 0;
  for (int64_t i = 0; i < k; ++i) top_k_mass += probs_[order_[i]];
  const double target = options_.top_p * top_k_mass;
  int64_t kept = 0;
  double cumulative = 0;
  while (kept < k) {
    cumulative += probs_[order_[kept++]];
    if (cumulative >= target) break;
  }
  double u = Uniform() * cumulative;
  for (int64_t i = 0; i < kept; ++i) {
    u -= probs_[order_[i]];
    if (u < 0) return order_[i];
  }
  return order_[kept - 1];  // rounding left u at or above the last probability
}

}  // namespace seqmesh
