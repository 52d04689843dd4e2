#include "scheduler/length_distribution.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>

#include "runtime/check.h"

namespace seqmesh::scheduler {
namespace {

TEST(LengthDistribution, BytedLikeMatchesItsAnchors) {
  auto d = LengthDistribution::Named("byted-like");
  std::mt19937_64 rng(3);
  const int n = 200000;
  int64_t small = 0;
  double tokens = 0, long_tokens = 0;
  for (int i = 0; i < n; ++i) {
    int64_t s = d.Sample(rng);
    ASSERT_GE(s, 1);
    ASSERT_LE(s, 2 << 20);
    small += s <= 4096;
    tokens += s;
    long_tokens += s >= 128 * 1024 ? s : 0;
  }
  EXPECT_NEAR(static_cast<double>(small) / n, 0.80, 0.01);  // 80% of samples <= 4K
  EXPECT_NEAR(long_tokens / tokens, 0.44, 0.05);            // ~44% of tokens >= 128K
}

TEST(LengthDistribution, DrawBatchHitsTheTokenCountAndCapsAtContext) {
  auto d = LengthDistribution::Named("github-like");
  auto batch = d.DrawBatch(1 << 22, 65536, 7);
  EXPECT_EQ(std::accumulate(batch.begin(), batch.end(), int64_t{0}), 1 << 22);
  for (int64_t s : batch) EXPECT_LE(s, 65536);
  EXPECT_EQ(batch, d.DrawBatch(1 << 22, 65536, 7));  // deterministic in the seed
}

TEST(LengthDistribution, LengthsFileAtomsAndErrors) {
  auto d = LengthDistribution::ParseLengthsText("# exact\n=100 1.0\n", "t");
  std::mt19937_64 rng(1);
  EXPECT_EQ(d.Sample(rng), 100);
  auto expect_error = [](const std::string& text, const std::string& needle) {
    try {
      LengthDistribution::ParseLengthsText(text, "f.txt");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("1024 0.5\n2048 0.2\n", "sum to 0.7");
  expect_error("1024 0.5\nabc 0.5\n", "f.txt:2");
  expect_error("1024 0.5\n512 0.5\n", "f.txt:2");
  expect_error("1024 1.5\n", "f.txt:1");
  EXPECT_THROW(LengthDistribution::FromArgument("no-such-name"), Error);
}

TEST(LengthDistribution, ReadsMegatronIndexLengths) {
  std::string path = ::testing::TempDir() + "/lengths_test.idx";
  {
    std::ofstream out(path, std::ios::binary);
    out.write("MMIDIDX\0\0", 9);
    uint64_t version = 1, count = 3, docs = 4;
    uint8_t dtype = 4;
    int32_t lengths[3] = {5, 5, 5};
    out.write(reinterpret_cast<char*>(&version), 8);
    out.write(reinterpret_cast<char*>(&dtype), 1);
    out.write(reinterpret_cast<char*>(&count), 8);
    out.write(reinterpret_cast<char*>(&docs), 8);
    out.write(reinterpret_cast<char*>(lengths), sizeof(lengths));
  }
  auto d = LengthDistribution::FromArgument(path);
  auto batch = d.DrawBatch(20, 100, 1);
  EXPECT_EQ(batch, (std::vector<int64_t>{5, 5, 5, 5}));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace seqmesh::scheduler
