// Number formatting and summaries shared by the commands' console lines and reports.
#pragma once

#include <cstdio>
#include <string>

#include "runtime/stats.h"  // Median, for the commands' reports

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

}  // namespace seqmesh::launch
