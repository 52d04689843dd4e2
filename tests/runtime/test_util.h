// Helpers shared by the runtime tests: error metrics and deterministic random fill.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "runtime/check.h"

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

// Passes when `f` throws a seqmesh::Error whose message contains `needle`; otherwise says what
// happened instead (no throw, another exception type, or the actual message).
inline ::testing::AssertionResult ThrowsWith(const std::function<void()>& f,
                                             const std::string& needle) {
  try {
    f();
  } catch (const Error& e) {
    const std::string m = e.what();
    if (m.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "message '" << m << "' does not contain '" << needle << "'";
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-seqmesh exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw (expected '" << needle << "')";
}

}  // namespace seqmesh::testing
