#include "scheduler/cost_model.h"

#include <gtest/gtest.h>

#include <random>

#include "runtime/check.h"

namespace seqmesh::scheduler {
namespace {

TEST(CostModel, ShippedH100LikeMatchesItsPaperAnchors) {
  CostModel m = LoadCostModel(SEQMESH_SOURCE_DIR "/scheduler/costs/h100-like.cost");
  EXPECT_EQ(m.layers_per_rank, 32);
  EXPECT_NEAR(m.a1 * 8192.0 * 8192.0, 2.8, 1e-6);  // 8K x 8K causal attention
  EXPECT_NEAR(m.KvTransferMs(8192), 1.5, 1e-6);    // one 8K-token ring step
  EXPECT_NEAR(m.KvTransferMs(1) / m.a1, 4389, 1);  // hiding threshold gamma / a1
}

TEST(CostModel, FormatThenParseRoundTrips) {
  CostModel m;
  m.name = "x";
  m.a1 = 1e-8;
  m.b1 = 2e-3;
  m.g = 0.5;
  m.a2 = 7;
  m.kv_bytes_per_token = 100;
  m.p2p_gbps = 3;
  CostModel back = ParseCostModel(FormatCostModel(m));
  EXPECT_EQ(back.name, "x");
  EXPECT_DOUBLE_EQ(back.a1, 1e-8);
  EXPECT_DOUBLE_EQ(back.g, 0.5);
  EXPECT_DOUBLE_EQ(back.p2p_gbps, 3);
}

TEST(CostModel, ParseErrorsNameTheLine) {
  try {
    ParseCostModel("a1 1e-8\nb1 x\n", "f.cost");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("f.cost:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ParseCostModel("a1 1\nbogus 3\n"), Error);
  EXPECT_THROW(ParseCostModel("a1 1\np2p_gbps 0\n"), Error);
  EXPECT_THROW(ParseCostModel("g 1\n"), Error);  // T(s) constant only
}

TEST(CostFit, RecoversExactQuadraticFromNoisySamples) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> noise(0, 0.002);
  std::vector<ComputeSample> samples;
  for (double s = 1024; s <= 16384; s *= 2)
    for (int k = 0; k < 3; ++k)
      samples.push_back({s, (4e-8 * s * s + 1.5e-3 * s + 0.2) * (1 + noise(rng))});
  CostModel m;
  FitCompute(samples, m);
  for (double s = 1024; s <= 16384; s *= 2)
    EXPECT_NEAR(m.LayerMs(s), 4e-8 * s * s + 1.5e-3 * s + 0.2, 0.01 * m.LayerMs(s));
  EXPECT_NEAR(m.a1, 4e-8, 4e-9);
}

TEST(CostFit, ActivationAndBandwidthAreExactOnExactData) {
  CostModel m;
  FitActivation({{1000, 1000 * 5.0 + 64}, {3000, 3000 * 5.0 + 64}, {9000, 9000 * 5.0 + 64}}, m);
  EXPECT_NEAR(m.a2, 5.0, 1e-9);
  EXPECT_NEAR(m.b2, 64, 1e-6);
  // 1e9 bytes in 100 ms = 10 GB/s.
  EXPECT_NEAR(FitBandwidthGbps({{1e9, 100}, {2e9, 200}}), 10, 1e-9);
  EXPECT_THROW(FitCompute({{1, 1}, {2, 2}}, m), Error);  // too few lengths
}

}  // namespace
}  // namespace seqmesh::scheduler
