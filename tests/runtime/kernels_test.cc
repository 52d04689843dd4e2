// The row-wise kernels (runtime/layers.h), the linear layers (runtime/matmul.h) and the optimizer
// (runtime/optimizer.h), in the order of STYLE.md rule 8: exact results from crafted inputs, then
// finite differences for every backward, then the ISA tables against the generic one, then
// thread-count determinism. Attention has its own file (attention_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cpu/layers.h"
#include "runtime/cpu/matmul.h"
#include "runtime/cpu/vec.h"
#include "runtime/layers.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "runtime/rope.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using testing::RandomVector;
using testing::RelError;

double DotD(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// ---------------------------------------------------------------------------------------------
// Exact results from crafted inputs.

// A constant row c has mean(x^2) = c^2: with c = -2 and eps = 0 every step is exact, so
// y = w * (-2 * 0.5) = -w and rstd = 0.5 bit for bit.
TEST(RmsNormExact, ConstantRowGivesMinusWeights) {
  const int64_t n = 37;
  std::vector<float> x(2 * n, -2.0f), w(n), y(2 * n), rstd(2);
  for (int64_t i = 0; i < n; ++i) w[i] = static_cast<float>(i + 1);
  RmsNormForward(x.data(), w.data(), y.data(), rstd.data(), 2, n, 0.0f);
  EXPECT_EQ(rstd[0], 0.5f);
  EXPECT_EQ(rstd[1], 0.5f);
  for (int64_t i = 0; i < 2 * n; ++i) EXPECT_EQ(y[i], -w[i % n]) << i;
}

// eps sits inside the square root: x = 4, eps = 9 gives rstd = 1/sqrt(16 + 9) = 0.2.
TEST(RmsNormExact, EpsIsAddedInsideTheRoot) {
  const int64_t n = 5;
  std::vector<float> x(n, 4.0f), w(n, 1.0f), y(n), rstd(1);
  RmsNormForward(x.data(), w.data(), y.data(), rstd.data(), 1, n, 9.0f);
  EXPECT_FLOAT_EQ(rstd[0], 0.2f);
  for (float v : y) EXPECT_FLOAT_EQ(v, 0.8f);
}

TEST(PositionsFromCuSeqlens, RestartAtEveryDocument) {
  // Documents of lengths 3, 0, 4, 1.
  const std::vector<int32_t> cu = {0, 3, 3, 7, 8};
  std::vector<int32_t> pos(8, -1);
  PositionsFromCuSeqlens(cu.data(), cu.size(), pos.data());
  EXPECT_EQ(pos, (std::vector<int32_t>{0, 1, 2, 0, 1, 2, 3, 0}));
}

// The unscaled table (theta only), as the model builds it.
void PlainRopeTable(const int32_t* pos, int64_t t, int head_dim, double theta, float* cos,
                    float* sin) {
  const std::vector<double> inv_freq = RopeInverseFrequencies(head_dim, theta, {});
  RopeTable(pos, t, inv_freq.data(), head_dim / 2, cos, sin);
}

// At position 0 every angle is 0: cos = 1 and sin = 0 exactly, and the rotation is the identity
// bit for bit.
TEST(RopeExact, PositionZeroIsIdentity) {
  const int head_dim = 10, heads = 3;
  const std::vector<int32_t> pos = {0, 0};
  std::vector<float> cos(2 * head_dim / 2), sin(cos.size());
  PlainRopeTable(pos.data(), 2, head_dim, 10000.0, cos.data(), sin.data());
  for (size_t i = 0; i < cos.size(); ++i) {
    EXPECT_EQ(cos[i], 1.0f);
    EXPECT_EQ(sin[i], 0.0f);
  }
  const auto x = RandomVector(2 * heads * head_dim, 3);
  std::vector<float> y = x;
  RopeApply(y.data(), heads * head_dim, 2, heads, head_dim, cos.data(), sin.data(), false);
  EXPECT_EQ(y, x);
}

// head_dim 4, theta 16: inv_freq = 16^(-2i/4) = {1, 1/4}, so position 2 has angles {2, 1/2}.
// rotate_half pairs element i with i + 2: (x0, x2) turn by 2 radians, (x1, x3) by 1/2. (The
// interleaved GPT-J pairing (x0, x1), (x2, x3) would give different numbers.)
TEST(RopeExact, KnownAngleRotatesHalfPairs) {
  const int32_t pos = 2;
  float cos[2], sin[2];
  PlainRopeTable(&pos, 1, 4, 16.0, cos, sin);
  EXPECT_FLOAT_EQ(cos[0], std::cos(2.0f));
  EXPECT_FLOAT_EQ(sin[0], std::sin(2.0f));
  EXPECT_FLOAT_EQ(cos[1], std::cos(0.5f));
  EXPECT_FLOAT_EQ(sin[1], std::sin(0.5f));

  float x[4] = {1, 2, 3, 4};
  RopeApply(x, 4, 1, 1, 4, cos, sin, false);
  const double c2 = std::cos(2.0), s2 = std::sin(2.0), ch = std::cos(0.5), sh = std::sin(0.5);
  EXPECT_NEAR(x[0], 1 * c2 - 3 * s2, 1e-6);
  EXPECT_NEAR(x[1], 2 * ch - 4 * sh, 1e-6);
  EXPECT_NEAR(x[2], 3 * c2 + 1 * s2, 1e-6);
  EXPECT_NEAR(x[3], 4 * ch + 2 * sh, 1e-6);

  // inverse rotates back.
  RopeApply(x, 4, 1, 1, 4, cos, sin, true);
  EXPECT_NEAR(x[0], 1, 1e-6);
  EXPECT_NEAR(x[1], 2, 1e-6);
  EXPECT_NEAR(x[2], 3, 1e-6);
  EXPECT_NEAR(x[3], 4, 1e-6);
}

// Uniform logits: softmax = 1/V, loss = log(V), gradient (1/V - onehot) * grad_scale; an ignored
// row adds no loss and gets an exactly zero gradient.
TEST(CrossEntropyExact, UniformLogitsGiveLogV) {
  const int64_t v = 50;
  std::vector<float> logits(2 * v, 1.5f);
  const int32_t targets[2] = {7, kIgnoreIndex};
  const double loss = CrossEntropyForwardBackward(logits.data(), targets, 2, v, 0.5f);
  EXPECT_NEAR(loss, std::log(50.0), 1e-6);
  for (int64_t j = 0; j < v; ++j) {
    const double want = 0.5 * (1.0 / v - (j == 7 ? 1.0 : 0.0));
    EXPECT_NEAR(logits[j], want, 1e-7) << j;
    EXPECT_EQ(logits[v + j], 0.0f) << "ignored row, column " << j;
  }
}

// max 1e-3, min 1e-4, 10 warmup steps, 110 total: warmup is 1e-4 * (k + 1); then
// lr = 1e-4 + 4.5e-4 * (1 + cos(pi * (k - 10) / 100)).
TEST(LrScheduleExact, WarmupCosineMidpointAndEnd) {
  const LrSchedule s{1e-3f, 1e-4f, 10, 110};
  s.Validate();
  EXPECT_FLOAT_EQ(s.At(0), 1e-4f);
  EXPECT_FLOAT_EQ(s.At(4), 5e-4f);
  EXPECT_FLOAT_EQ(s.At(9), 1e-3f);           // last warmup step reaches max_lr
  EXPECT_FLOAT_EQ(s.At(10), 1e-3f);          // cosine starts at max_lr
  EXPECT_FLOAT_EQ(s.At(35), 8.6819805e-4f);  // quarter: 1e-4 + 4.5e-4 * (1 + 1/sqrt(2))
  EXPECT_FLOAT_EQ(s.At(60), 5.5e-4f);        // midpoint: (max + min) / 2
  EXPECT_FLOAT_EQ(s.At(110), 1e-4f);         // end
  EXPECT_FLOAT_EQ(s.At(1000), 1e-4f);        // and after
  const LrSchedule no_warmup{2e-3f, 0.0f, 0, 4};
  EXPECT_FLOAT_EQ(no_warmup.At(0), 2e-3f);
  EXPECT_FLOAT_EQ(no_warmup.At(2), 1e-3f);
  EXPECT_FLOAT_EQ(no_warmup.At(4), 0.0f);
}

TEST(ClipScaleExact, BelowAndAboveMaxNorm) {
  EXPECT_EQ(ClipScale(0.5, 1.0f), 1.0f);
  EXPECT_EQ(ClipScale(0.0, 1.0f), 1.0f);
  EXPECT_FLOAT_EQ(ClipScale(4.0, 1.0f), static_cast<float>(1.0 / (4.0 + 1e-6)));
  EXPECT_FLOAT_EQ(ClipScale(10.0, 2.5f), 0.25f);
  // torch divides by norm + 1e-6, so a norm equal to max_norm is scaled by slightly less than 1.
  EXPECT_LT(ClipScale(1.0, 1.0f), 1.0f);
  EXPECT_EQ(ClipScale(1e9, 0.0f), 1.0f);  // max_norm <= 0 disables clipping
  EXPECT_EQ(ClipScale(1e9, -1.0f), 1.0f);
}

// 3^2 + 4^2 + 12^2 = 13^2; a tensor longer than the optimizer's 65536-element chunks adds
// 70000 ones. Sums of small integers are exact in float and double.
TEST(GlobalNormExact, CraftedTensors) {
  float a[2] = {3, 4}, b[1] = {-12};
  std::vector<float> ones(70000, 1.0f);
  const Tensor ta("a", DType::kF32, {2}, a), tb("b", DType::kF32, {1, 1}, b);
  const Tensor tc("c", DType::kF32, {70000}, ones.data());
  EXPECT_EQ(GlobalNorm({ta, tb}), 13.0);
  EXPECT_EQ(GlobalNorm({ta, tc, tb}), std::sqrt(70169.0));
  EXPECT_EQ(GlobalNorm({}), 0.0);
}

// torch.optim.AdamW arithmetic in double, two steps, for a 2-D tensor (decayed) and a 1-D tensor
// (not decayed) holding the same values and gradients.
TEST(AdamWExact, TwoStepsMatchTorchArithmetic) {
  AdamWConfig cfg;
  cfg.beta1 = 0.9f;
  cfg.beta2 = 0.95f;
  cfg.eps = 1e-8f;
  cfg.weight_decay = 0.1f;
  const std::vector<float> init = {1.0f, -2.0f, 0.5f};
  const std::vector<std::vector<float>> grads = {{0.1f, -0.3f, 2.0f}, {-0.2f, -0.1f, 0.05f}};
  const float lrs[2] = {0.01f, 0.02f}, scales[2] = {0.5f, 1.0f};

  std::vector<float> pw = init, pb = init, g(3);
  std::vector<Tensor> params = {Tensor("w", DType::kF32, {1, 3}, pw.data()),
                                Tensor("b", DType::kF32, {3}, pb.data())};
  const Tensor gt("g", DType::kF32, {3}, g.data()), gt2("g2", DType::kF32, {1, 3}, g.data());
  AdamW opt(params, cfg);

  // Reference state per tensor: p, m, v in double.
  std::vector<double> p_ref[2] = {{1.0, -2.0, 0.5}, {1.0, -2.0, 0.5}};
  std::vector<double> m_ref[2] = {std::vector<double>(3, 0.0), std::vector<double>(3, 0.0)};
  std::vector<double> v_ref[2] = {std::vector<double>(3, 0.0), std::vector<double>(3, 0.0)};
  const double b1 = cfg.beta1, b2 = cfg.beta2, eps = cfg.eps, wd = cfg.weight_decay;
  for (int step = 1; step <= 2; ++step) {
    g = grads[step - 1];
    const double lr = lrs[step - 1], gs = scales[step - 1];
    opt.Step(params, {gt2, gt}, lrs[step - 1], scales[step - 1]);
    EXPECT_EQ(opt.step(), step);
    for (int t = 0; t < 2; ++t) {
      const double decay = t == 0 ? wd : 0.0;  // only the 2-D tensor is decayed
      for (int i = 0; i < 3; ++i) {
        double& p = p_ref[t][i];
        double& m = m_ref[t][i];
        double& v = v_ref[t][i];
        const double gi = static_cast<double>(g[i]) * gs;
        p *= 1 - lr * decay;
        m = b1 * m + (1 - b1) * gi;
        v = b2 * v + (1 - b2) * gi * gi;
        const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
        const double denom = std::sqrt(v) / std::sqrt(bc2) + eps;
        p -= lr / bc1 * m / denom;
        const float got = (t == 0 ? pw : pb)[i];
        EXPECT_NEAR(got, p, 1e-6 * std::max(1.0, std::fabs(p)))
            << (t == 0 ? "w" : "b") << "[" << i << "] step " << step;
        const Tensor& mt = opt.moments().Find(std::string("m.") + (t == 0 ? "w" : "b"));
        const Tensor& vt = opt.moments().Find(std::string("v.") + (t == 0 ? "w" : "b"));
        EXPECT_NEAR(mt.f32()[i], m, 1e-6 * std::fabs(m));
        EXPECT_NEAR(vt.f32()[i], v, 1e-6 * std::fabs(v));
      }
    }
  }
  // Decay makes the 2-D tensor differ from the 1-D one by far more than the tolerance above.
  for (int i = 0; i < 3; ++i) EXPECT_GT(std::fabs(pw[i] - pb[i]), 1e-5) << i;
}

// ---------------------------------------------------------------------------------------------
// Finite differences. Each backward is checked against central differences of
// L = sum(out * R) (R random) in three random directions per input. fp32 forward with
// eps = 1e-2: truncation (eps^2 * L''') and fp32 rounding of L (~1e-7 * |L| / eps) both stay
// near 1e-4 of the derivative, so the bound is 2e-3 relative; a wrong gradient misses it by
// orders of magnitude.

constexpr float kFdEps = 1e-2f;
constexpr double kFdTol = 2e-3;

// Checks grad against central differences of `loss` around x.
void ExpectMatchesFiniteDifferences(const std::function<double(const std::vector<float>&)>& loss,
                                    const std::vector<float>& x, const std::vector<float>& grad,
                                    uint32_t seed, const std::string& what) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  for (int d = 0; d < 3; ++d) {
    const auto dir = RandomVector(x.size(), seed + d);
    std::vector<float> plus = x, minus = x;
    for (size_t i = 0; i < x.size(); ++i) {
      plus[i] += kFdEps * dir[i];
      minus[i] -= kFdEps * dir[i];
    }
    const double numeric = (loss(plus) - loss(minus)) / (2.0 * kFdEps);
    const double analytic = DotD(grad, dir);
    EXPECT_NEAR(analytic, numeric, kFdTol * std::fabs(numeric)) << what << ", direction " << d;
  }
}

TEST(RmsNormGradient, DxAndDwMatchFiniteDifferences) {
  const int64_t t = 5, n = 37;
  const float eps = 1e-5f;
  const auto x = RandomVector(t * n, 1);
  auto w = RandomVector(n, 2, 0.1f);
  for (float& v : w) v += 1.0f;
  const auto r = RandomVector(t * n, 3);
  auto loss = [&](const std::vector<float>& xx, const std::vector<float>& ww) {
    std::vector<float> y(t * n), rstd(t);
    RmsNormForward(xx.data(), ww.data(), y.data(), rstd.data(), t, n, eps);
    return DotD(y, r);
  };
  std::vector<float> y(t * n), rstd(t), dx(t * n, 123.0f), dw(n, 0.0f);
  RmsNormForward(x.data(), w.data(), y.data(), rstd.data(), t, n, eps);
  RmsNormBackward(r.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), t, n, false);
  ExpectMatchesFiniteDifferences([&](const auto& xx) { return loss(xx, w); }, x, dx, 10, "dx");
  ExpectMatchesFiniteDifferences([&](const auto& ww) { return loss(x, ww); }, w, dw, 20, "dw");

  // accumulate adds dx to what is there; dw always accumulates (a second call doubles it, up to
  // the rounding of adding per-thread partial sums one at a time).
  std::vector<float> dx_acc(t * n, 0.25f), dw2 = dw;
  RmsNormBackward(r.data(), x.data(), w.data(), rstd.data(), dx_acc.data(), dw2.data(), t, n, true);
  for (int64_t i = 0; i < t * n; ++i) EXPECT_NEAR(dx_acc[i], dx[i] + 0.25f, 1e-5) << i;
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(dw2[i], 2.0f * dw[i], 1e-5 * std::fabs(dw[i])) << i;
}

// The forward rotation is linear, so its gradient is its transpose: RopeApply(inverse = true)
// applied to R. Rows have a stride wider than the heads (as in the fused qkv buffer), the
// half-width 5 leaves a vector tail, and positions differ per row.
TEST(RopeGradient, InverseIsTheBackwardOfForward) {
  const int64_t t = 6;
  const int heads = 3, head_dim = 10;
  const int64_t ld = heads * head_dim + 4;
  std::vector<int32_t> pos = {0, 1, 2, 7, 100, 3};
  std::vector<float> cos(t * head_dim / 2), sin(cos.size());
  PlainRopeTable(pos.data(), t, head_dim, 10000.0, cos.data(), sin.data());
  const auto x = RandomVector(t * ld, 4);
  const auto r = RandomVector(t * ld, 5);
  auto loss = [&](const std::vector<float>& xx) {
    std::vector<float> y = xx;
    RopeApply(y.data(), ld, t, heads, head_dim, cos.data(), sin.data(), false);
    double s = 0;
    for (int64_t i = 0; i < t; ++i)
      for (int64_t c = 0; c < heads * head_dim; ++c)  // the padding columns are not outputs
        s += static_cast<double>(y[i * ld + c]) * r[i * ld + c];
    return s;
  };
  std::vector<float> dx = r;
  RopeApply(dx.data(), ld, t, heads, head_dim, cos.data(), sin.data(), true);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t c = heads * head_dim; c < ld; ++c) dx[i * ld + c] = 0.0f;
  ExpectMatchesFiniteDifferences(loss, x, dx, 30, "dx");
  // The padding columns were left untouched by the rotation.
  std::vector<float> y = x;
  RopeApply(y.data(), ld, t, heads, head_dim, cos.data(), sin.data(), false);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t c = heads * head_dim; c < ld; ++c) EXPECT_EQ(y[i * ld + c], x[i * ld + c]);
}

TEST(SwiGluGradient, DgateAndDupMatchFiniteDifferences) {
  const int64_t t = 3, f = 13;
  const auto gu = RandomVector(t * 2 * f, 6, 2.0f);
  const auto r = RandomVector(t * f, 7);
  auto loss = [&](const std::vector<float>& x) {
    std::vector<float> h(t * f);
    SwiGluForward(x.data(), h.data(), t, f);
    return DotD(h, r);
  };
  std::vector<float> dgu(t * 2 * f, 99.0f);
  SwiGluBackward(gu.data(), r.data(), dgu.data(), t, f);
  // Check gate and up separately: zero the other half's gradient and perturb only this half.
  for (int half = 0; half < 2; ++half) {
    std::vector<float> g = dgu;
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < f; ++j) g[i * 2 * f + (1 - half) * f + j] = 0.0f;
    auto masked_loss = [&](const std::vector<float>& x) {
      std::vector<float> xx = gu;
      for (int64_t i = 0; i < t; ++i)
        for (int64_t j = 0; j < f; ++j) xx[i * 2 * f + half * f + j] = x[i * 2 * f + half * f + j];
      return loss(xx);
    };
    ExpectMatchesFiniteDifferences(masked_loss, gu, g, 40 + 10 * half, half ? "d up" : "d gate");
  }
}

// L = grad_scale * (sum of losses of non-ignored rows); rows 1 and 4 are ignored and must get
// exactly zero gradient.
TEST(CrossEntropyGradient, DlogitsMatchFiniteDifferences) {
  const int64_t t = 6, v = 23;
  const float grad_scale = 1.0f / 28.0f;
  const auto logits = RandomVector(t * v, 8, 2.0f);
  const std::vector<int32_t> targets = {3, kIgnoreIndex, 0, 22, kIgnoreIndex, 11};
  auto loss = [&](const std::vector<float>& x) {
    std::vector<float> y = x;
    return grad_scale * CrossEntropyForwardBackward(y.data(), targets.data(), t, v, grad_scale);
  };
  std::vector<float> grad = logits;
  const double loss_sum =
      CrossEntropyForwardBackward(grad.data(), targets.data(), t, v, grad_scale);
  ExpectMatchesFiniteDifferences(loss, logits, grad, 60, "d logits");

  // The loss against a double-precision log-sum-exp over the non-ignored rows.
  double want = 0;
  for (int64_t i = 0; i < t; ++i) {
    if (targets[i] == kIgnoreIndex) continue;
    double mx = -1e30, z = 0;
    for (int64_t j = 0; j < v; ++j) mx = std::max(mx, static_cast<double>(logits[i * v + j]));
    for (int64_t j = 0; j < v; ++j) z += std::exp(logits[i * v + j] - mx);
    want += mx + std::log(z) - logits[i * v + targets[i]];
  }
  EXPECT_NEAR(loss_sum, want, 1e-6 * want);
  for (int64_t j = 0; j < v; ++j) {
    EXPECT_EQ(grad[1 * v + j], 0.0f);
    EXPECT_EQ(grad[4 * v + j], 0.0f);
  }
  // Each non-ignored row of (softmax - onehot) * grad_scale sums to zero.
  for (int64_t i : {0, 2, 3, 5}) {
    double s = 0;
    for (int64_t j = 0; j < v; ++j) s += grad[i * v + j];
    EXPECT_NEAR(s, 0.0, 1e-7) << "row " << i;
  }
}

// Token 3 appears three times and token 0 once; tokens 2, 4 and 6 never: their rows stay at
// their initial value, and repeated ids accumulate.
TEST(EmbeddingGradient, RepeatedTokensAccumulate) {
  const int64_t vocab = 7, hidden = 19, t = 6;
  const std::vector<int32_t> tokens = {3, 1, 3, 0, 3, 5};
  const auto table = RandomVector(vocab * hidden, 9);
  const auto r = RandomVector(t * hidden, 10);
  auto loss = [&](const std::vector<float>& tab) {
    std::vector<float> out(t * hidden);
    EmbeddingForward(tokens.data(), t, tab.data(), vocab, hidden, out.data());
    return DotD(out, r);
  };
  std::vector<float> dtable(vocab * hidden, 0.0f);
  EmbeddingBackward(tokens.data(), t, r.data(), hidden, dtable.data());
  ExpectMatchesFiniteDifferences(loss, table, dtable, 70, "d table");

  for (int64_t c = 0; c < hidden; ++c) {
    // In row order, as the kernel adds them.
    EXPECT_EQ(dtable[3 * hidden + c], (r[0 * hidden + c] + r[2 * hidden + c]) + r[4 * hidden + c]);
    EXPECT_EQ(dtable[0 * hidden + c], r[3 * hidden + c]);
    for (int64_t unused : {2, 4, 6}) EXPECT_EQ(dtable[unused * hidden + c], 0.0f);
  }
  // It adds to what is there, row by row in token order.
  std::vector<float> again = dtable, want = dtable;
  EmbeddingBackward(tokens.data(), t, r.data(), hidden, again.data());
  for (int64_t i = 0; i < t; ++i)
    for (int64_t c = 0; c < hidden; ++c) want[tokens[i] * hidden + c] += r[i * hidden + c];
  EXPECT_EQ(again, want);
}

TEST(LinearGradient, BackwardInputAndWeightMatchFiniteDifferences) {
  const int64_t t = 5, in = 11, out = 7;
  auto x = RandomVector(t * in, 11);
  auto w = RandomVector(out * in, 12);
  auto r = RandomVector(t * out, 13);
  auto loss = [&](const std::vector<float>& xx, const std::vector<float>& ww) {
    std::vector<float> y(t * out);
    LinearForward(Tensor("x", DType::kF32, {t, in}, const_cast<float*>(xx.data())),
                  Tensor("w", DType::kF32, {out, in}, const_cast<float*>(ww.data())),
                  Tensor("y", DType::kF32, {t, out}, y.data()));
    return DotD(y, r);
  };
  std::vector<float> dx(t * in, 5.0f), dw(out * in, 0.0f);
  const Tensor dy_t("dy", DType::kF32, {t, out}, r.data());
  const Tensor x_t("x", DType::kF32, {t, in}, x.data()), w_t("w", DType::kF32, {out, in}, w.data());
  const Tensor dx_t("dx", DType::kF32, {t, in}, dx.data());
  const Tensor dw_t("dw", DType::kF32, {out, in}, dw.data());
  LinearBackwardInput(dy_t, w_t, dx_t, false);
  LinearBackwardWeight(dy_t, x_t, dw_t);
  ExpectMatchesFiniteDifferences([&](const auto& xx) { return loss(xx, w); }, x, dx, 80, "dx");
  ExpectMatchesFiniteDifferences([&](const auto& ww) { return loss(x, ww); }, w, dw, 90, "dw");

  // accumulate = true adds to dx; the weight gradient always adds.
  std::vector<float> dx2 = dx, dw2 = dw;
  LinearBackwardInput(dy_t, w_t, Tensor("dx2", DType::kF32, {t, in}, dx2.data()), true);
  LinearBackwardWeight(dy_t, x_t, Tensor("dw2", DType::kF32, {out, in}, dw2.data()));
  for (int64_t i = 0; i < t * in; ++i) EXPECT_NEAR(dx2[i], 2.0f * dx[i], 1e-5) << i;
  for (int64_t i = 0; i < out * in; ++i) EXPECT_NEAR(dw2[i], 2.0f * dw[i], 1e-5) << i;
}

// ---------------------------------------------------------------------------------------------
// Every ISA table against the generic one, on lengths that leave vector tails (1 and 7 are below
// one AVX2 vector, 17 and 33 are one past multiples of 16, 1000 is long enough for reductions
// to be reordered). Tolerance 1e-5 of the result's scale: reductions sum in a different order
// per vector width and FMA contraction differs per ISA, which moves results by ~1e-6 at most
// here; a dropped or doubled tail element moves them by 1e-3 or more.

constexpr double kIsaTol = 1e-5;
const int64_t kLengths[] = {1, 7, 17, 33, 1000};

// Calls body(table, n) for every non-generic table and every length, with a trace naming both.
void ForEachTableAndLength(const std::function<void(const cpu::VecKernels&, int64_t)>& body) {
  int count = 0;
  const cpu::VecKernels* const* all = cpu::AllVecKernels(&count);
  for (int k = 1; k < count; ++k)
    for (int64_t n : kLengths) {
      SCOPED_TRACE(std::string(all[k]->isa) + ", n = " + std::to_string(n));
      body(*all[k], n);
    }
}

const cpu::VecKernels& Generic() {
  int count = 0;
  return *cpu::AllVecKernels(&count)[0];
}

TEST(VecIsaTables, GenericComesFirstAndTheChosenTableIsListed) {
  int count = 0;
  const cpu::VecKernels* const* all = cpu::AllVecKernels(&count);
  ASSERT_GE(count, 1);
  EXPECT_STREQ(all[0]->isa, "generic");
  bool listed = false;
  for (int k = 0; k < count; ++k) listed |= all[k] == &cpu::Vec();
  EXPECT_TRUE(listed) << "Vec() returned " << cpu::Vec().isa;
  if (count == 1) GTEST_SKIP() << "only the generic table on this CPU: nothing to compare";
}

// Scalar results compared relative to the reference's magnitude.
void ExpectClose(double got, double want, const char* what) {
  EXPECT_NEAR(got, want, kIsaTol * std::max(1.0, std::fabs(want))) << what;
}

TEST(VecIsaTables, ReductionsMatchGeneric) {
  const cpu::VecKernels& g = Generic();
  ForEachTableAndLength([&](const cpu::VecKernels& k, int64_t n) {
    const auto a = RandomVector(n, 100 + n), b = RandomVector(n, 200 + n);
    ExpectClose(k.sum_squares(a.data(), n), g.sum_squares(a.data(), n), "sum_squares");
    EXPECT_EQ(k.max(a.data(), n), g.max(a.data(), n)) << "max";
    ExpectClose(k.dot(a.data(), b.data(), n), g.dot(a.data(), b.data(), n), "dot");
  });
}

TEST(VecIsaTables, ElementwiseMatchGeneric) {
  const cpu::VecKernels& g = Generic();
  ForEachTableAndLength([&](const cpu::VecKernels& k, int64_t n) {
    const auto a = RandomVector(n, 300 + n), b = RandomVector(n, 400 + n);
    std::vector<float> x1 = a, x2 = a;
    ExpectClose(k.exp_shift(x1.data(), n, 0.7f), g.exp_shift(x2.data(), n, 0.7f), "exp_shift sum");
    EXPECT_LT(RelError(x1.data(), x2.data(), n), kIsaTol) << "exp_shift";
    x1 = a, x2 = a;
    k.scale(x1.data(), n, -1.3f);
    g.scale(x2.data(), n, -1.3f);
    EXPECT_EQ(x1, x2) << "scale";
    x1 = a, x2 = a;
    k.add(x1.data(), b.data(), n);
    g.add(x2.data(), b.data(), n);
    EXPECT_EQ(x1, x2) << "add";
    x1 = b, x2 = b;
    k.softmax_grad(a.data(), x1.data(), n, 0.3f);
    g.softmax_grad(a.data(), x2.data(), n, 0.3f);
    EXPECT_LT(RelError(x1.data(), x2.data(), n), kIsaTol) << "softmax_grad";
  });
}

TEST(VecIsaTables, RmsNormForwardAndBackwardMatchGeneric) {
  const cpu::VecKernels& g = Generic();
  ForEachTableAndLength([&](const cpu::VecKernels& k, int64_t n) {
    const auto x = RandomVector(n, 500 + n), w = RandomVector(n, 600 + n),
               dy = RandomVector(n, 700 + n);
    std::vector<float> y1(n), y2(n);
    const float r1 = k.rmsnorm(x.data(), w.data(), y1.data(), n, 1e-5f);
    const float r2 = g.rmsnorm(x.data(), w.data(), y2.data(), n, 1e-5f);
    ExpectClose(r1, r2, "rstd");
    EXPECT_LT(RelError(y1.data(), y2.data(), n), kIsaTol) << "rmsnorm y";
    // dx = rstd * (w*dy - xhat * mean(w*dy*xhat)) is a difference of terms of size rstd*|w*dy|
    // that cancel almost completely for short rows (n = 1: xhat^2 = 1 - eps*rstd^2, so dx is
    // ~1e-5 of either term). Its error is measured against the terms, not against dx itself.
    double term_scale = 0;
    for (int64_t i = 0; i < n; ++i)
      term_scale = std::max(term_scale, std::fabs(static_cast<double>(r2) * w[i] * dy[i]));
    for (bool accumulate : {false, true}) {
      std::vector<float> dx1(n, 0.5f), dx2(n, 0.5f), dw1(n, 0.25f), dw2(n, 0.25f);
      k.rmsnorm_backward(dy.data(), x.data(), w.data(), r2, dx1.data(), dw1.data(), n, accumulate);
      g.rmsnorm_backward(dy.data(), x.data(), w.data(), r2, dx2.data(), dw2.data(), n, accumulate);
      double dx_err = 0;
      for (int64_t i = 0; i < n; ++i)
        dx_err = std::max(dx_err, std::fabs(static_cast<double>(dx1[i]) - dx2[i]));
      EXPECT_LT(dx_err, kIsaTol * term_scale) << "dx, accumulate " << accumulate;
      EXPECT_LT(RelError(dw1.data(), dw2.data(), n), kIsaTol) << "dw, accumulate " << accumulate;
    }
  });
}

TEST(VecIsaTables, RopeMatchesGeneric) {
  const cpu::VecKernels& g = Generic();
  ForEachTableAndLength([&](const cpu::VecKernels& k, int64_t half) {
    const auto x = RandomVector(2 * half, 800 + half), ang = RandomVector(half, 900 + half, 3.0f);
    std::vector<float> c(half), s(half);
    for (int64_t i = 0; i < half; ++i) c[i] = std::cos(ang[i]), s[i] = std::sin(ang[i]);
    for (bool inverse : {false, true}) {
      std::vector<float> x1 = x, x2 = x;
      k.rope(x1.data(), c.data(), s.data(), half, inverse);
      g.rope(x2.data(), c.data(), s.data(), half, inverse);
      EXPECT_LT(RelError(x1.data(), x2.data(), 2 * half), kIsaTol) << "inverse " << inverse;
    }
  });
}

TEST(VecIsaTables, SwiGluForwardAndBackwardMatchGeneric) {
  const cpu::VecKernels& g = Generic();
  ForEachTableAndLength([&](const cpu::VecKernels& k, int64_t n) {
    const auto gate = RandomVector(n, 1000 + n, 3.0f), up = RandomVector(n, 1100 + n),
               dh = RandomVector(n, 1200 + n);
    std::vector<float> h1(n), h2(n);
    k.swiglu(gate.data(), up.data(), h1.data(), n);
    g.swiglu(gate.data(), up.data(), h2.data(), n);
    EXPECT_LT(RelError(h1.data(), h2.data(), n), kIsaTol) << "h";
    std::vector<float> dg1(n), dg2(n), du1(n), du2(n);
    k.swiglu_backward(gate.data(), up.data(), dh.data(), dg1.data(), du1.data(), n);
    g.swiglu_backward(gate.data(), up.data(), dh.data(), dg2.data(), du2.data(), n);
    EXPECT_LT(RelError(dg1.data(), dg2.data(), n), kIsaTol) << "d gate";
    EXPECT_LT(RelError(du1.data(), du2.data(), n), kIsaTol) << "d up";
  });
}

TEST(VecIsaTables, CrossEntropyMatchesGeneric) {
  const cpu::VecKernels& g = Generic();
  ForEachTableAndLength([&](const cpu::VecKernels& k, int64_t n) {
    const auto logits = RandomVector(n, 1300 + n, 4.0f);
    const int32_t target = static_cast<int32_t>(n / 2);
    std::vector<float> x1 = logits, x2 = logits;
    const float l1 = k.cross_entropy(x1.data(), n, target, 0.125f);
    const float l2 = g.cross_entropy(x2.data(), n, target, 0.125f);
    ExpectClose(l1, l2, "loss");
    EXPECT_LT(RelError(x1.data(), x2.data(), n), kIsaTol) << "d logits";
  });
}

TEST(VecIsaTables, AdamWMatchesGeneric) {
  const cpu::VecKernels& g = Generic();
  ForEachTableAndLength([&](const cpu::VecKernels& k, int64_t n) {
    const auto p = RandomVector(n, 1400 + n), grad = RandomVector(n, 1500 + n);
    auto m = RandomVector(n, 1600 + n, 0.1f), v = RandomVector(n, 1700 + n, 0.1f);
    for (float& x : v) x = x * x;  // second moments are non-negative
    cpu::AdamWStep s{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1 - 0.9f * 0.9f, 1 - 0.95f * 0.95f, 0.7f};
    std::vector<float> p1 = p, p2 = p, m1 = m, m2 = m, v1 = v, v2 = v;
    k.adamw(p1.data(), grad.data(), m1.data(), v1.data(), n, s);
    g.adamw(p2.data(), grad.data(), m2.data(), v2.data(), n, s);
    EXPECT_LT(RelError(p1.data(), p2.data(), n), kIsaTol) << "p";
    EXPECT_LT(RelError(m1.data(), m2.data(), n), kIsaTol) << "m";
    EXPECT_LT(RelError(v1.data(), v2.data(), n), kIsaTol) << "v";
  });
}

// ---------------------------------------------------------------------------------------------
// Determinism: 1 and 2 threads give the same bits.

struct RmsNormGrads {
  std::vector<float> dx, dw;
};

std::vector<RmsNormGrads> RmsNormBackwardOnOneAndTwoThreads() {
  const int64_t t = 64, n = 33;
  const auto x = RandomVector(t * n, 21), w = RandomVector(n, 22), dy = RandomVector(t * n, 23);
  std::vector<RmsNormGrads> runs;
  for (int threads : {1, 2}) {
    const auto backend = MakeBackend(Device::kCpu, ExecutionContext{threads});
    EXPECT_EQ(backend->context().threads, threads);
    std::vector<float> y(t * n), rstd(t), dx(t * n), dw(n, 0.0f);
    auto view = [](std::vector<float>& v, std::initializer_list<int64_t> shape) {
      return Tensor("v", DType::kF32, Shape(shape), v.data());
    };
    std::vector<float> xm = x, wm = w, dym = dy;
    backend->RmsNormForward(view(xm, {t, n}), view(wm, {n}), view(y, {t, n}), view(rstd, {t}),
                            1e-5f);
    backend->RmsNormBackward(view(dym, {t, n}), view(xm, {t, n}), view(wm, {n}), view(rstd, {t}),
                             view(dx, {t, n}), view(dw, {n}), false);
    runs.push_back({dx, dw});
  }
  return runs;
}

// Rows are independent, so dx is computed the same way whatever the split.
TEST(RmsNormDeterminism, DxIsBitwiseIdenticalOnOneAndTwoThreads) {
  const auto runs = RmsNormBackwardOnOneAndTwoThreads();
  EXPECT_EQ(runs[0].dx, runs[1].dx);
}

// dw is reduced over fixed 64-row blocks added in block order, not one partial per thread.
TEST(RmsNormDeterminism, DwIsBitwiseIdenticalOnOneAndTwoThreads) {
  const auto runs = RmsNormBackwardOnOneAndTwoThreads();
  EXPECT_EQ(runs[0].dw, runs[1].dw);
}

// Gemm on shapes cut into several tiles along M (M >= N) and along N, every transpose, with
// leading dimensions wider than the matrices: C = alpha op(A) op(B) + beta C against a double
// reference, and bitwise the same on 1, 2 and 3 threads (K long enough that oneDNN's own
// threading would split it on AVX2).
struct GemmCase {
  bool ta, tb;
  int64_t m, n, k;
};

std::vector<GemmCase> GemmCases() {
  std::vector<GemmCase> cases;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{45, 37, 32},
                             {300, 48, 700},
                             {48, 530, 256},
                             {64, 64, 3000},
                             {32, 24, 4000}})
        cases.push_back({ta, tb, m, n, k});
  return cases;
}

std::vector<float> RunGemm(const GemmCase& g, int threads, double* rel_error = nullptr) {
  // Stored shapes: A is (m, k) or (k, m) when transposed; B is (k, n) or (n, k). Pad by 3.
  const int64_t a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
  const int64_t b_rows = g.tb ? g.n : g.k, b_cols = g.tb ? g.k : g.n;
  const int64_t lda = a_cols + 3, ldb = b_cols + 3, ldc = g.n + 3;
  const auto a = RandomVector(a_rows * lda, 11), b = RandomVector(b_rows * ldb, 12);
  const auto c0 = RandomVector(g.m * ldc, 13);
  std::vector<float> c = c0;
  const float alpha = 0.75f, beta = 0.5f;
  Gemm(g.ta, g.tb, g.m, g.n, g.k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc,
       ExecutionContext{threads});
  if (rel_error) {
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < g.k; ++p) {
          const double x = g.ta ? a[p * lda + i] : a[i * lda + p];
          const double y = g.tb ? b[j * ldb + p] : b[p * ldb + j];
          s += x * y;
        }
        const double want = alpha * s + beta * c0[i * ldc + j];
        diff = std::max(diff, std::fabs(want - c[i * ldc + j]));
        scale = std::max(scale, std::fabs(want));
      }
    // The padding columns of C are never written.
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = g.n; j < ldc; ++j) EXPECT_EQ(c[i * ldc + j], c0[i * ldc + j]);
    *rel_error = diff / scale;
  }
  return c;
}

std::string GemmName(const GemmCase& g) {
  return std::string(g.ta ? "T" : "N") + (g.tb ? "T" : "N") + " " + std::to_string(g.m) + "x" +
         std::to_string(g.n) + "x" + std::to_string(g.k);
}

TEST(GemmTiles, EveryTransposeMatchesADoubleReference) {
  for (const GemmCase& g : GemmCases()) {
    double err = 0;
    RunGemm(g, 2, &err);
    // fp32 sums of up to 3000 products of N(0,1) values: relative to the output's scale.
    EXPECT_LT(err, 2e-5) << GemmName(g);
  }
}

TEST(GemmDeterminism, BitwiseIdenticalOnOneTwoAndThreeThreads) {
  for (const GemmCase& g : GemmCases()) {
    const auto one = RunGemm(g, 1);
    EXPECT_EQ(one, RunGemm(g, 2)) << GemmName(g);
    EXPECT_EQ(one, RunGemm(g, 3)) << GemmName(g);
  }
}

struct ModelRun {
  float loss;
  std::vector<float> logits;
  std::vector<std::string> grad_names;
  std::vector<std::vector<float>> grads;  // per gradient tensor
  std::vector<int> grad_ndim;
};

// A tiny GQA model (layer 1 checkpointed) on three packed documents, once on 1 thread and once
// on 2.
std::vector<ModelRun> ModelStepOnThreads(const std::vector<int32_t>& cu,
                                         const std::vector<int>& thread_counts) {
  ModelConfig c;
  c.vocab = 37;
  c.hidden = 32;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 48;
  const int64_t t = cu.back();
  std::vector<int32_t> tokens(t), targets(t);
  for (int64_t i = 0; i < t; ++i) tokens[i] = static_cast<int32_t>((i * 7 + 3) % c.vocab);
  for (int64_t i = 0; i < t; ++i) targets[i] = static_cast<int32_t>((i * 5 + 1) % c.vocab);
  for (size_t d = 1; d < cu.size(); ++d) targets[cu[d] - 1] = kIgnoreIndex;
  Batch b;
  b.tokens = tokens.data();
  b.targets = targets.data();
  b.cu_seqlens = cu.data();
  b.num_docs = static_cast<int64_t>(cu.size()) - 1;
  b.num_tokens = t;

  std::vector<ModelRun> runs;
  for (int threads : thread_counts) {
    Model model(c, {t, {false, true}, {}, {}, {}, MakeBackend(Device::kCpu, {threads})});
    model.InitRandom(5, 0.2f);  // wider than the default 0.02 so activations are far from zero
    model.ZeroGrad();
    ModelRun run;
    run.logits.resize(t * c.vocab);
    run.loss = model.Forward(b, 42.0f, run.logits.data());
    model.Backward();
    for (const Tensor& g : model.grads()) {
      run.grad_names.push_back(g.name());
      run.grads.emplace_back(g.f32(), g.f32() + g.numel());
      run.grad_ndim.push_back(g.shape().ndim());
    }
    runs.push_back(std::move(run));
  }
  return runs;
}

std::vector<ModelRun> ModelStepOnOneAndTwoThreads() {
  return ModelStepOnThreads({0, 19, 20, 45}, {1, 2});
}

// Everything but the RMSNorm weight gradients (see the disabled test below).
TEST(ModelDeterminism, LossLogitsAndMatrixGradientsAreBitwiseIdenticalOnOneAndTwoThreads) {
  const auto runs = ModelStepOnOneAndTwoThreads();
  EXPECT_EQ(runs[0].loss, runs[1].loss);
  EXPECT_EQ(runs[0].logits, runs[1].logits);
  ASSERT_EQ(runs[0].grads.size(), runs[1].grads.size());
  int compared = 0;
  for (size_t i = 0; i < runs[0].grads.size(); ++i) {
    if (runs[0].grad_ndim[i] < 2) continue;
    EXPECT_EQ(runs[0].grads[i], runs[1].grads[i]) << runs[0].grad_names[i];
    ++compared;
  }
  EXPECT_EQ(compared, 2 + 2 * 7);  // embedding, lm_head and 7 matrices in each of 2 layers
}

TEST(ModelDeterminism, NormWeightGradientsAreBitwiseIdenticalOnOneAndTwoThreads) {
  const auto runs = ModelStepOnOneAndTwoThreads();
  for (size_t i = 0; i < runs[0].grads.size(); ++i) {
    if (runs[0].grad_ndim[i] >= 2) continue;
    EXPECT_EQ(runs[0].grads[i], runs[1].grads[i]) << runs[0].grad_names[i];
  }
}

// 330 tokens: the matrix products are cut into several tiles (runtime/cpu/matmul.cc), and the
// weight gradients sum over K = 330 tokens, which oneDNN's own threading splits on AVX2.
TEST(ModelDeterminism, EveryOutputIsBitwiseIdenticalOnOneTwoAndThreeThreadsWhenGemmsAreTiled) {
  const auto runs = ModelStepOnThreads({0, 100, 101, 250, 330}, {1, 2, 3});
  for (size_t r = 1; r < runs.size(); ++r) {
    EXPECT_EQ(runs[0].loss, runs[r].loss);
    EXPECT_EQ(runs[0].logits, runs[r].logits);
    ASSERT_EQ(runs[0].grads.size(), runs[r].grads.size());
    for (size_t i = 0; i < runs[0].grads.size(); ++i)
      EXPECT_EQ(runs[0].grads[i], runs[r].grads[i]) << runs[0].grad_names[i] << " run " << r;
  }
}

// The layout gradient sync builds its buckets from: consecutive groups covering params() (the
// embedding, one per layer holding that layer's tensors, the final norm with the lm_head), and
// Backward's gradient-ready hook finishing them in the layout's finish order (layers last to
// first, then -1 for the embedding and the rest), untied and tied.
TEST(ModelParamLayout, GroupsCoverTheParamsAndBackwardFinishesThemInOrder) {
  for (bool tied : {false, true}) {
    ModelConfig c;
    c.vocab = 37;
    c.hidden = 32;
    c.layers = 3;
    c.heads = 4;
    c.kv_heads = 2;
    c.ffn = 48;
    c.tie_embeddings = tied;
    std::vector<int64_t> calls;
    ModelOptions o;
    o.max_tokens = 16;
    o.on_layer_grads_ready = [&](int64_t layer) { calls.push_back(layer); };
    Model model(c, o);
    model.InitRandom(1);
    const ParamLayout& layout = model.param_layout();
    ASSERT_EQ(layout.groups.size(), static_cast<size_t>(c.layers + 2));
    size_t next = 0;
    for (const ParamLayout::Group& g : layout.groups) {
      EXPECT_EQ(g.first, next);
      EXPECT_LT(g.first, g.last);
      for (size_t t = g.first; t < g.last; ++t) {
        const std::string& name = model.params()[t].name();
        const bool in_layer = name.rfind("model.layers.", 0) == 0;
        EXPECT_EQ(in_layer, g.layer >= 0) << name;
        if (in_layer) {
          EXPECT_EQ(name.rfind("model.layers." + std::to_string(g.layer) + ".", 0), 0u) << name;
        }
      }
      next = g.last;
    }
    EXPECT_EQ(next, model.params().size());
    EXPECT_EQ(model.params()[layout.groups.back().first].name(), "model.norm.weight");

    const std::vector<int32_t> tokens = {1, 2, 3, 4, 5}, targets = {2, 3, 4, 5, kIgnoreIndex};
    const std::vector<int32_t> cu = {0, 5};
    Batch b{tokens.data(), targets.data(), cu.data(), 1, 5, nullptr};
    model.ZeroGrad();
    model.Forward(b, 4.0f);
    model.Backward();
    // Each hook call finishes the groups of that layer, in finish order.
    std::vector<int64_t> finished_layers;
    for (int g : layout.finish_order) finished_layers.push_back(layout.groups[g].layer);
    std::vector<int64_t> expected_calls;
    for (int64_t l = c.layers - 1; l >= 0; --l) expected_calls.push_back(l);
    expected_calls.push_back(-1);
    EXPECT_EQ(calls, expected_calls);
    std::vector<int64_t> call_per_group = expected_calls;
    call_per_group.push_back(-1);  // the -1 call finishes the embedding and the rest
    EXPECT_EQ(finished_layers, call_per_group);
    EXPECT_EQ(layout.groups[layout.finish_order[c.layers]].first, 0u);  // the embedding first
  }
}

}  // namespace
}  // namespace seqmesh
