// Helpers shared by the runtime tests: error metrics and deterministic random fill.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace seqmesh::testing {

// max_i |a_i - b_i| / max_i |b_i|: the error relative to the tensor's scale. (Element-wise
// relative error is meaningless for entries near zero, which every gradient has.)
inline double RelError(const float* a, const float* b, int64_t n) {
  double diff = 0.0, scale = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return scale == 0.0 ? diff : diff / scale;
}

inline std::vector<float> RandomVector(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace seqmesh::testing
