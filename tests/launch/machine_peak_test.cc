// The MFU denominator (issue 13, item 8): measured once per machine and thread count, cached and
// read back by later runs; an MFU is never above 1 (a run printed 134.8%): a faster step raises
// the cached peak instead.
#include "launch/machine_peak.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

TEST(MachinePeak, MeasuredOnceCachedAndNeverBelowWhatARunAchieved) {
  const std::string dir =
      (fs::temp_directory_path() / ("seqmesh_peak_" + std::to_string(::getpid()))).string();
  ::setenv("SEQMESH_CACHE_DIR", dir.c_str(), 1);
  MachinePeak first(1);
  ASSERT_GT(first.gflops(), 0);
  EXPECT_EQ(first.source(), "measured");
  MachinePeak again(1);
  EXPECT_EQ(again.source(), dir + "/peak-1-threads.json");
  EXPECT_EQ(again.gflops(), first.gflops());  // the same figure for every run
  EXPECT_DOUBLE_EQ(again.Mfu(again.gflops() / 2), 0.5);
  const double faster = 2 * again.gflops();
  EXPECT_EQ(again.Mfu(faster), 1.0);           // never above 1
  EXPECT_EQ(MachinePeak(1).gflops(), faster);  // the cache holds the raised peak
  fs::remove_all(dir);
  ::unsetenv("SEQMESH_CACHE_DIR");
}

}  // namespace
}  // namespace seqmesh::launch
