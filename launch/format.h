// Number formatting and summaries shared by the commands' console lines and reports.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/check.h"

namespace seqmesh::launch {

// v with `digits` digits after the point ("%.*f").
inline std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// v in scientific notation with 2 digits after the point ("%.2e").
inline std::string Sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}

// The median of the samples (the mean of the middle two for an even count).
inline double Median(std::vector<double> v) {
  SM_CHECK(!v.empty()) << "median of no samples";
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace seqmesh::launch
