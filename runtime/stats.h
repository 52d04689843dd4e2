// Summaries of measured samples, header-only (so scheduler/, which links only the check family
// of runtime/, can use it as well as the launch commands).
#pragma once

#include <algorithm>
#include <vector>

#include "runtime/check.h"

namespace seqmesh {

// The median of the samples (the mean of the middle two for an even count).
inline double Median(std::vector<double> v) {
  SM_CHECK(!v.empty()) << "median of no samples";
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace seqmesh
