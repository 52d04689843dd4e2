// Flash attention against (1) PyTorch in float64 (tests/reference/fixtures/attention.bin, blocks
// longer than a CPU tile), (2) a plain O(s^2) implementation in this file for many layouts, and
// (3) finite differences for the backward.
#include "runtime/cpu/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tests/reference/fixture.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using testing::Fixture;
using testing::RandomVector;
using testing::RelError;

// Plain attention over segments, in double: out (T, H*d), lse (H, T).
void NaiveForward(const AttentionDims& dims, const std::vector<AttentionSegment>& segs,
                  const std::vector<float>& q, const std::vector<float>& k,
                  const std::vector<float>& v, int64_t t, float scale, std::vector<float>& out,
                  std::vector<float>& lse) {
  const int64_t d = dims.head_dim, qw = dims.heads * d, kw = dims.kv_heads * d;
  out.assign(t * qw, 0.0f);
  lse.assign(dims.heads * t, -std::numeric_limits<float>::infinity());
  const int group = dims.heads / dims.kv_heads;
  for (const AttentionSegment& s : segs)
    for (int h = 0; h < dims.heads; ++h)
      for (int64_t i = 0; i < s.q_len; ++i) {
        std::vector<double> sc;
        for (int64_t j = 0; j < s.k_len && s.k_pos + j <= s.q_pos + i; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < d; ++c)
            dot += static_cast<double>(q[(s.q_begin + i) * qw + h * d + c]) *
                   k[(s.k_begin + j) * kw + (h / group) * d + c];
          sc.push_back(dot * scale);
        }
        if (sc.empty()) continue;
        double m = sc[0];
        for (double x : sc) m = std::max(m, x);
        double sum = 0;
        for (double& x : sc) sum += (x = std::exp(x - m));
        for (int64_t c = 0; c < d; ++c) {
          double o = 0;
          for (size_t j = 0; j < sc.size(); ++j)
            o += sc[j] / sum * v[(s.k_begin + j) * kw + (h / group) * d + c];
          out[(s.q_begin + i) * qw + h * d + c] = static_cast<float>(o);
        }
        lse[h * t + s.q_begin + i] = static_cast<float>(m + std::log(sum));
      }
}

TEST(AttentionFixture, ForwardAndBackwardMatchPyTorch) {
  Fixture f = Fixture::Load(std::string(SEQMESH_FIXTURE_DIR) + "/attention.bin");
  AttentionDims dims{f.ScalarInt("config.heads"), f.ScalarInt("config.kv_heads"),
                     f.ScalarInt("config.head_dim")};
  const Tensor& q = f.Get("q");
  const int64_t t = q.dim(0);
  std::vector<float> out(f.Get("out").numel()), lse(f.Get("lse").numel());
  std::vector<float> dq(q.numel(), 0.0f), dk(f.Get("k").numel(), 0.0f), dv(dk.size(), 0.0f);
  Tensor out_t("out", DType::kF32, f.Get("out").shape(), out.data());
  Tensor lse_t("lse", DType::kF32, f.Get("lse").shape(), lse.data());
  VarlenAttentionForward(dims, q, f.Get("k"), f.Get("v"), f.Get("cu_seqlens"), out_t, lse_t);
  EXPECT_LT(RelError(out.data(), f.Get("out").f32(), out.size()), 1e-5);
  EXPECT_LT(RelError(lse.data(), f.Get("lse").f32(), lse.size()), 1e-5);

  Tensor dq_t("dq", DType::kF32, q.shape(), dq.data());
  Tensor dk_t("dk", DType::kF32, f.Get("k").shape(), dk.data());
  Tensor dv_t("dv", DType::kF32, f.Get("v").shape(), dv.data());
  VarlenAttentionBackward(dims, q, f.Get("k"), f.Get("v"), f.Get("cu_seqlens"), out_t, lse_t,
                          f.Get("dout"), dq_t, dk_t, dv_t);
  EXPECT_LT(RelError(dq.data(), f.Get("dq").f32(), dq.size()), 1e-5);
  EXPECT_LT(RelError(dk.data(), f.Get("dk").f32(), dk.size()), 1e-5);
  EXPECT_LT(RelError(dv.data(), f.Get("dv").f32(), dv.size()), 1e-5);
  EXPECT_EQ(t, 530);
}

struct Layout {
  std::string name;
  AttentionDims dims;
  std::vector<int32_t> cu;
};

class AttentionLayoutTest : public ::testing::TestWithParam<Layout> {};

// Document lengths around the tile sizes (128 query rows, 256 key rows), a one-token document,
// an empty document, and GQA group sizes 1, 2, 3 and 6.
TEST_P(AttentionLayoutTest, ForwardMatchesPlainAttention) {
  const Layout& p = GetParam();
  const int64_t t = p.cu.back(), d = p.dims.head_dim;
  const auto q = RandomVector(t * p.dims.heads * d, 1);
  const auto k = RandomVector(t * p.dims.kv_heads * d, 2);
  const auto v = RandomVector(t * p.dims.kv_heads * d, 3);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  auto segs = SegmentsFromCuSeqlens(p.cu.data(), p.cu.size(), t);
  std::vector<float> out(t * p.dims.heads * d), lse(p.dims.heads * t), ref_out, ref_lse;
  AttentionIo io{{const_cast<float*>(q.data()), p.dims.heads * d},
                 {const_cast<float*>(k.data()), p.dims.kv_heads * d},
                 {const_cast<float*>(v.data()), p.dims.kv_heads * d},
                 {out.data(), p.dims.heads * d},
                 lse.data(),
                 t};
  AttentionForward(p.dims, segs, io, scale);
  NaiveForward(p.dims, segs, q, k, v, t, scale, ref_out, ref_lse);
  EXPECT_LT(RelError(out.data(), ref_out.data(), out.size()), 1e-5);
  EXPECT_LT(RelError(lse.data(), ref_lse.data(), lse.size()), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, AttentionLayoutTest,
    ::testing::Values(Layout{"one_token", {2, 1, 8}, {0, 1}},
                      Layout{"tile_edges", {4, 2, 16}, {0, 127, 255, 256, 384, 641}},
                      Layout{"empty_doc_mha", {3, 3, 8}, {0, 5, 5, 300}},
                      Layout{"group3", {6, 2, 4}, {0, 129, 130, 390}},
                      Layout{"group6_long", {6, 1, 32}, {0, 700}}),
    [](const auto& info) { return info.param.name; });

// Backward against central differences of L = sum(out * R) in the direction of random dq/dk/dv
// perturbations. fp32 forward, eps = 1e-2: truncation and rounding both stay near 1e-4, so the
// bound is 2e-3 relative (it fails by orders of magnitude on a wrong gradient).
struct GradCase {
  std::string name;
  AttentionDims dims;
  std::vector<int32_t> cu;
};

class AttentionGradient : public ::testing::TestWithParam<GradCase> {};

TEST_P(AttentionGradient, BackwardMatchesFiniteDifferences) {
  const AttentionDims dims = GetParam().dims;
  const std::vector<int32_t>& cu = GetParam().cu;
  const int64_t t = cu.back(), qw = dims.heads * dims.head_dim, kw = dims.kv_heads * dims.head_dim;
  auto segs = SegmentsFromCuSeqlens(cu.data(), cu.size(), t);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dims.head_dim));
  auto q = RandomVector(t * qw, 11), k = RandomVector(t * kw, 12), v = RandomVector(t * kw, 13);
  const auto r = RandomVector(t * qw, 14);
  auto loss = [&](const std::vector<float>& qq, const std::vector<float>& kk,
                  const std::vector<float>& vv) {
    std::vector<float> out(t * qw), lse(dims.heads * t);
    AttentionIo io{{const_cast<float*>(qq.data()), qw},
                   {const_cast<float*>(kk.data()), kw},
                   {const_cast<float*>(vv.data()), kw},
                   {out.data(), qw},
                   lse.data(),
                   t};
    AttentionForward(dims, segs, io, scale);
    double s = 0;
    for (int64_t i = 0; i < t * qw; ++i) s += static_cast<double>(out[i]) * r[i];
    return s;
  };
  std::vector<float> out(t * qw), lse(dims.heads * t);
  AttentionIo io{{q.data(), qw}, {k.data(), kw}, {v.data(), kw}, {out.data(), qw}, lse.data(), t};
  AttentionForward(dims, segs, io, scale);
  std::vector<float> dq(t * qw, 0.0f), dk(t * kw, 0.0f), dv(t * kw, 0.0f);
  AttentionBackward(dims, segs, io, {const_cast<float*>(r.data()), qw}, {dq.data(), qw},
                    {dk.data(), kw}, {dv.data(), kw}, scale);

  const float eps = 1e-2f;
  for (int which = 0; which < 3; ++which) {
    std::vector<float>& x = which == 0 ? q : which == 1 ? k : v;
    const std::vector<float>& g = which == 0 ? dq : which == 1 ? dk : dv;
    const auto dir = RandomVector(x.size(), 20 + which);
    double analytic = 0;
    for (size_t i = 0; i < x.size(); ++i) analytic += static_cast<double>(g[i]) * dir[i];
    std::vector<float> plus = x, minus = x;
    for (size_t i = 0; i < x.size(); ++i) {
      plus[i] += eps * dir[i];
      minus[i] -= eps * dir[i];
    }
    double lp, lm;
    if (which == 0)
      lp = loss(plus, k, v), lm = loss(minus, k, v);
    else if (which == 1)
      lp = loss(q, plus, v), lm = loss(q, minus, v);
    else
      lp = loss(q, k, plus), lm = loss(q, k, minus);
    const double numeric = (lp - lm) / (2 * eps);
    EXPECT_NEAR(analytic, numeric, 2e-3 * std::fabs(numeric)) << "input " << which;
  }
}

// "packed": one item per (document, kv head). "mqa_one_doc": too few of those, so backward
// splits by query head with private dK/dV sums (runtime/cpu/attention.cc).
INSTANTIATE_TEST_SUITE_P(Schedules, AttentionGradient,
                         ::testing::Values(GradCase{"packed", {4, 2, 8}, {0, 3, 40, 41, 170}},
                                           GradCase{"mqa_one_doc", {4, 1, 8}, {0, 300}},
                                           GradCase{"gqa_two_docs", {6, 2, 8}, {0, 130, 290}}),
                         [](const auto& info) { return info.param.name; });

// The same result on 1 and 2 threads, bit for bit (items own disjoint outputs).
class AttentionDeterminism : public ::testing::TestWithParam<GradCase> {};

TEST_P(AttentionDeterminism, ThreadCountDoesNotChangeResults) {
  const AttentionDims dims = GetParam().dims;
  const std::vector<int32_t>& cu = GetParam().cu;
  const int64_t t = cu.back(), qw = dims.heads * dims.head_dim, kw = dims.kv_heads * dims.head_dim;
  auto segs = SegmentsFromCuSeqlens(cu.data(), cu.size(), t);
  auto q = RandomVector(t * qw, 1), k = RandomVector(t * kw, 2), v = RandomVector(t * kw, 3);
  auto dout = RandomVector(t * qw, 4);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2}) {
    const ExecutionContext ctx{threads};
    std::vector<float> out(t * qw), lse(dims.heads * t), dq(t * qw, 0.0f), dk(t * kw, 0.0f),
        dv(t * kw, 0.0f);
    AttentionIo io{{q.data(), qw}, {k.data(), kw}, {v.data(), kw}, {out.data(), qw}, lse.data(), t};
    AttentionForward(dims, segs, io, 0.25f, /*causal=*/true, ctx);
    AttentionBackward(dims, segs, io, {dout.data(), qw}, {dq.data(), qw}, {dk.data(), kw},
                      {dv.data(), kw}, 0.25f, /*causal=*/true, ctx);
    out.insert(out.end(), dq.begin(), dq.end());
    out.insert(out.end(), dk.begin(), dk.end());
    out.insert(out.end(), dv.begin(), dv.end());
    results.push_back(out);
  }
  EXPECT_EQ(results[0], results[1]);
}

// A ring step's pattern: the same queries over two disjoint key ranges (given by positions, the
// second invisible to the first 90 queries), computed separately and merged, equal attention
// over all keys at once.
TEST(AttentionMerge, TwoKeyRangesMergeToTheWhole) {
  const AttentionDims dims{4, 2, 16};
  const int64_t s = 200, split = 90, qw = 64, kw = 32;
  auto q = RandomVector(s * qw, 31), k = RandomVector(s * kw, 32), v = RandomVector(s * kw, 33);
  const float scale = 0.25f;
  auto run = [&](AttentionSegment seg, std::vector<float>& out, std::vector<float>& lse) {
    out.assign(s * qw, 0.0f);
    lse.assign(dims.heads * s, 0.0f);
    AttentionIo io{{q.data(), qw}, {k.data(), kw}, {v.data(), kw}, {out.data(), qw}, lse.data(), s};
    AttentionForward(dims, std::vector<AttentionSegment>{seg}, io, scale);
  };
  std::vector<float> whole, whole_lse, a, a_lse, b, b_lse;
  run({0, s, 0, s, 0, 0}, whole, whole_lse);
  run({0, s, 0, split, 0, 0}, a, a_lse);
  run({0, s, split, s - split, 0, split}, b, b_lse);
  EXPECT_TRUE(std::isinf(b_lse[0]));  // query 0 sees no key of the second range
  AttentionMerge(dims, s, {a.data(), qw}, a_lse.data(), s, {b.data(), qw}, b_lse.data(), s);
  EXPECT_LT(RelError(a.data(), whole.data(), a.size()), 1e-6);
  EXPECT_LT(RelError(a_lse.data(), whole_lse.data(), a_lse.size()), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Schedules, AttentionDeterminism,
                         ::testing::Values(GradCase{"packed", {4, 2, 16}, {0, 300, 301, 700}},
                                           GradCase{"mqa_one_doc", {4, 1, 16}, {0, 500}}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace seqmesh
