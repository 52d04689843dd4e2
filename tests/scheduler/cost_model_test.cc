#include "scheduler/cost_model.h"

#include <gtest/gtest.h>

#include <cmath>
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

TEST(CostModel, ShippedThisCpuMatchesItsModelShape) {
  // scheduler/costs/this-cpu.cost: `seqmesh profile` of examples/text.toml (hidden 128, 4 layers,
  // 4 heads, 2 KV heads, ffn 384). Its times are this VM's; its shape-derived numbers are exact.
  CostModel m = LoadCostModel(SEQMESH_SOURCE_DIR "/scheduler/costs/this-cpu.cost");
  EXPECT_EQ(m.name, "this-cpu");
  EXPECT_EQ(m.layers_per_rank, 4);
  EXPECT_EQ(m.kv_bytes_per_token, 3 * 2 * 2 * 32 * 4);  // K, V, dK, dV of 2 KV heads, f32
  // f32 per token: residual input, xn1, rstd1, qkv (128 + 2 * 64), attn, lse (4 heads), x2, xn2,
  // rstd2, gate_up (768), h (384).
  EXPECT_EQ(m.a2, 4 * (128 + 128 + 1 + 256 + 128 + 4 + 128 + 128 + 1 + 768 + 384));
  EXPECT_GT(m.a1, 0);
  EXPECT_GT(m.b1, 0);
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

// Issue 13, item 11: a cost file records the machine it was profiled on, and a file from
// another machine is told apart (the shipped this-cpu files were profiled with AVX-512).
TEST(CostModel, TheMachineRoundTripsAndAnotherMachineIsNamed) {
  CostModel m;
  m.name = "x";
  m.b1 = 0.01;
  m.machine = {"AMD_EPYC_7B13", "avx2", "none", 1, 4};
  const CostModel back = ParseCostModel(FormatCostModel(m));
  EXPECT_EQ(back.machine, m.machine);
  EXPECT_EQ(MachineMismatch(back.machine, m.machine), "");
  MachineInfo other = m.machine;
  other.isa = "avx512";
  EXPECT_EQ(MachineMismatch(other, m.machine),
            "it was profiled on AMD_EPYC_7B13 (avx512, 1 thread(s) per rank, 4 rank(s), gpu none), "
            "this is AMD_EPYC_7B13 (avx2, 1 thread(s) per rank, 4 rank(s), gpu none)");
  other = m.machine;
  other.ranks = 2;
  EXPECT_NE(MachineMismatch(other, m.machine), "");
  EXPECT_EQ(MachineMismatch(MachineInfo{}, m.machine), "");  // not recorded: nothing to say
  const CostModel shipped =
      LoadCostModel(std::string(SEQMESH_SOURCE_DIR) + "/scheduler/costs/this-cpu-4ranks.cost");
  EXPECT_EQ(shipped.machine.isa, "avx512");
  EXPECT_EQ(shipped.machine.ranks, 4);
  EXPECT_THROW(ParseCostModel("name x\nb1 0.01\nmachine_ranks -1\n"), Error);
}

TEST(CostModel, PassCalibrationsRoundTripAndFallBack) {
  CostModel m = ParseCostModel(
      "a1 1e-8\nhead_ms_per_token 0.002\nstep_fixed_ms 5.5\npass_factor_1 1.1\npass_ms_1 0\n"
      "pass_factor_2 1.25\npass_ms_2 3\ncontended_factor_2 1.5\ncontended_ms_2 20\n");
  EXPECT_DOUBLE_EQ(m.Pass(1).factor, 1.1);
  EXPECT_DOUBLE_EQ(m.Pass(2).ms, 3);
  // A size not given takes the largest given below it; below every given size, 1 and 0 ms.
  EXPECT_DOUBLE_EQ(m.Pass(4).factor, 1.25);
  EXPECT_DOUBLE_EQ(CostModel{}.Pass(3).factor, 1.0);
  EXPECT_DOUBLE_EQ(m.ContendedPass(2).ms, 20);
  EXPECT_DOUBLE_EQ(m.ContendedPass(3).factor, 1.25);  // no contended 3: the plain one
  CostModel back = ParseCostModel(FormatCostModel(m));
  EXPECT_DOUBLE_EQ(back.head_ms_per_token, 0.002);
  EXPECT_DOUBLE_EQ(back.step_fixed_ms, 5.5);
  EXPECT_DOUBLE_EQ(back.Pass(2).factor, 1.25);
  EXPECT_DOUBLE_EQ(back.ContendedPass(2).factor, 1.5);
  EXPECT_EQ(back.pass.size(), 2u);
  EXPECT_EQ(back.contended_pass.size(), 1u);
  // A file without them formats without them.
  EXPECT_EQ(FormatCostModel(CostModel{}).find("pass_"), std::string::npos);
  EXPECT_THROW(ParseCostModel("a1 1\npass_factor_0 1\n"), Error);           // D >= 1
  EXPECT_THROW(ParseCostModel("a1 1\npass_factor_x 1\n"), Error);           // not a size
  EXPECT_THROW(ParseCostModel("a1 1\ncontended_factor_2 0\n"), Error);      // factor > 0
  EXPECT_THROW(ParseCostModel("a1 1\npass_ms_2 -1\n"), Error);              // ms >= 0
  EXPECT_THROW(ParseCostModel("a1 1\npass_ms_2 1\npass_ms_2 2\n"), Error);  // twice
  EXPECT_THROW(ParseCostModel("a1 1\nstep_fixed_ms -1\n"), Error);
}

TEST(CostModel, RefitScalesRoundTripAndAreChecked) {
  CostModel m = ParseCostModel("a1 1e-8\nscale_1 0.9\nscale_3 1.5\n");
  EXPECT_DOUBLE_EQ(m.Scale(1), 0.9);
  EXPECT_DOUBLE_EQ(m.Scale(2), 1.0);  // none given: 1 (no fallback to a smaller size)
  EXPECT_DOUBLE_EQ(m.Scale(3), 1.5);
  const CostModel back = ParseCostModel(FormatCostModel(m));
  EXPECT_EQ(back.scale, m.scale);
  EXPECT_EQ(FormatCostModel(CostModel{}).find("scale_"), std::string::npos);
  EXPECT_THROW(ParseCostModel("a1 1\nscale_0 1\n"), Error);
  EXPECT_THROW(ParseCostModel("a1 1\nscale_2 0\n"), Error);
  EXPECT_THROW(ParseCostModel("a1 1\nscale_2 1\nscale_2 1.1\n"), Error);
  EXPECT_THROW(ParseCostModel("a1 1\nscale_ 1\n"), Error);
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

// Non-negative least squares is convex, so the KKT conditions prove a fit optimal: at the fit,
// the gradient of the squared error vanishes along every coefficient > 0 and does not point
// into the feasible side (A_j^T residual <= 0) along every coefficient at 0.
// With `relative`, the same for the errors divided by the measured times.
void ExpectNonNegativeLeastSquaresOptimum(const std::vector<ComputeSample>& samples,
                                          const CostModel& m, bool relative = false) {
  EXPECT_GE(m.a1, 0);
  EXPECT_GE(m.b1, 0);
  EXPECT_GE(m.g, 0);
  const double coef[3] = {m.a1, m.b1, m.g};
  for (int p = 2, j = 0; p >= 0; --p, ++j) {
    double grad = 0, scale = 0;  // A_j^T (y - A x), and the size of its terms
    for (const auto& q : samples) {
      const double w = relative ? 1 / q.ms : 1;
      const double col = w * std::pow(q.tokens, p);
      grad += col * w * (q.ms - m.LayerMs(q.tokens));
      scale += std::fabs(col * w * q.ms);
    }
    if (coef[j] > 0)
      EXPECT_NEAR(grad / scale, 0, 1e-9) << "power " << p;
    else
      EXPECT_LE(grad / scale, 1e-9) << "power " << p;
  }
}

TEST(CostFit, NegativeConstantIsDroppedForTheBestNonNegativeFit) {
  // Exactly linear with a negative intercept: the plain fit is a1 = 0, b1 = 2e-3, g = -1.
  std::vector<ComputeSample> samples;
  for (double s = 1000; s <= 4000; s += 1000) samples.push_back({s, 2e-3 * s - 1});
  CostModel m;
  FitCompute(samples, m);
  EXPECT_EQ(m.g, 0);
  EXPECT_GT(m.a1, 0);  // the curvature now stands in for the missing intercept
  ExpectNonNegativeLeastSquaresOptimum(samples, m);
}

TEST(CostFit, NegativeQuadraticIsDroppedForTheBestNonNegativeFit) {
  // Concave: the plain fit's a1 is -1e-7.
  std::vector<ComputeSample> samples;
  for (double s = 1024; s <= 16384; s *= 2) samples.push_back({s, 5 + 3e-3 * s - 1e-7 * s * s});
  CostModel m;
  FitCompute(samples, m);
  EXPECT_EQ(m.a1, 0);
  EXPECT_GT(m.b1, 0);
  ExpectNonNegativeLeastSquaresOptimum(samples, m);
  EXPECT_THROW(FitCompute({{1000, 9}, {2000, 8}, {3000, 7}}, m), Error);  // falls with s
}

TEST(CostFit, RelativeFitIsExactOnExactDataAndWeighsShortLengthsAlike) {
  std::vector<ComputeSample> exact, bumped;
  for (double s = 1024; s <= 16384; s *= 2) {
    const double t = 8e-6 * s * s + 3e-3 * s + 0.5;
    exact.push_back({s, t});
    bumped.push_back({s, s == 8192 ? 1.05 * t : t});  // one length 5% slow
  }
  CostModel m;
  FitCompute(exact, m, FitError::kRelative);
  EXPECT_NEAR(m.a1, 8e-6, 1e-15);
  EXPECT_NEAR(m.b1, 3e-3, 1e-11);
  EXPECT_NEAR(m.g, 0.5, 1e-7);
  // A 5% bump at 8K: the plain fit, dominated by the long lengths' milliseconds, moves the 1K
  // prediction far more (relative to its time) than the relative fit does.
  CostModel plain, relative;
  FitCompute(bumped, plain);
  FitCompute(bumped, relative, FitError::kRelative);
  ExpectNonNegativeLeastSquaresOptimum(bumped, relative, /*relative=*/true);
  auto error_at_1k = [&](const CostModel& c) {
    return std::fabs(c.LayerMs(1024) - bumped[0].ms) / bumped[0].ms;
  };
  EXPECT_LT(error_at_1k(relative), 0.5 * error_at_1k(plain));
  EXPECT_THROW(FitCompute({{1, 1}, {2, 0}, {3, 3}}, m, FitError::kRelative), Error);  // 0 ms
}

}  // namespace
}  // namespace seqmesh::scheduler
