// CudaBackend against CpuBackend, kernel by kernel, on the same random inputs (issue 16's
// tests/cuda): every Backend entry, attention on packed documents with documents of length 1,
// grouped-query and multi-query heads and ring-style segments, five AdamW steps, run-to-run
// bitwise determinism, and the entry checks' messages. Every test skips, naming the reason,
// when this machine has no usable CUDA device (DeviceUnavailableReason).
//
// Tolerance: fp32 on both sides, compared by normwise relative error max|gpu - cpu| / max|cpu|
// <= 1e-5 per output. Element-wise relative error is not a fit: the two sides sum in different
// orders (cuBLASLt's tiles against oneDNN's, a block tree against a SIMD loop), and an output
// that cancels to near zero has a large relative error under either order while its absolute
// error stays at the level of the terms (the usual bound for fp32 GEMMs and reductions). Kernels
// with no reduction (SwiGLU, RoPE, AdamW, copies) differ only by expf against the CPU's
// polynomial exp (2e-7 relative) and meet the same bound with room.
#include "runtime/cuda/cuda_backend.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cuda/device_arena.h"
#include "runtime/layers.h"

namespace seqmesh {
namespace {

using cuda::CudaBackend;

constexpr double kTol = 1e-5;

// A host tensor and its device twin, of one name, dtype and shape.
class Twin {
 public:
  Twin(const std::string& name, DType dtype, Shape shape)
      : host_(name + " (host)"), device_(name + " (device)") {
    host_.Add(name, dtype, shape);
    host_.Allocate();
    device_.Add(name, dtype, shape);
    device_.Allocate();
  }
  const Tensor& h() const { return host_.tensors().front(); }
  const Tensor& d() const { return device_.tensors().front(); }
  float* hf() const { return h().f32(); }
  int32_t* hi() const { return h().i32(); }
  int64_t n() const { return h().numel(); }
  // Host -> device.
  void Up() const { cuda::CopyToDevice(d(), h()); }
  // The device contents as floats (a copy).
  std::vector<float> Down() const {
    std::vector<float> v(n());
    Tensor t(h().name(), DType::kF32, h().shape(), v.data());
    cuda::CopyToHost(t, d());
    return v;
  }
  // Uniform in [-scale, scale], then uploaded.
  void Random(std::mt19937& rng, float scale = 1.0f) const {
    std::uniform_real_distribution<float> u(-scale, scale);
    for (int64_t i = 0; i < n(); ++i) hf()[i] = u(rng);
    Up();
  }

 private:
  Arena host_;
  cuda::DeviceArena device_;
};

double RelErr(const std::vector<float>& got, const float* want) {
  double err = 0.0, scale = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return scale > 0 ? err / scale : err;
}

// The device result of `t` matches its host result within kTol (normwise).
void ExpectMatches(const Twin& t, const char* what) {
  EXPECT_LE(RelErr(t.Down(), t.hf()), kTol) << what << ": tensor '" << t.h().name() << "'";
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = DeviceUnavailableReason(Device::kCuda);
    if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device here: " << reason;
    gpu_ = std::make_shared<CudaBackend>(ExecutionContext{1});
    cpu_ = MakeBackend(Device::kCpu, ExecutionContext{2});
  }
  std::shared_ptr<CudaBackend> gpu_;
  std::shared_ptr<Backend> cpu_;
  std::mt19937 rng_{1234};
};

TEST_F(CudaBackendTest, MakeBackendGivesTheCudaBackend) {
  const auto backend = MakeBackend(Device::kCuda, {});
  EXPECT_EQ(backend->device(), Device::kCuda);
}

TEST_F(CudaBackendTest, LinearForwardAndBackwardMatchTheCpu) {
  const int64_t t = 37, in = 48, out = 65;
  Twin x("x", DType::kF32, {t, in}), w("w", DType::kF32, {out, in}), y("y", DType::kF32, {t, out});
  Twin dy("dy", DType::kF32, {t, out}), dx("dx", DType::kF32, {t, in});
  Twin dw("dw", DType::kF32, {out, in});
  for (const Twin* a : {&x, &w, &y, &dy, &dx, &dw}) a->Random(rng_);
  for (bool accumulate : {false, true}) {
    cpu_->LinearForward(x.h(), w.h(), y.h(), accumulate);
    gpu_->LinearForward(x.d(), w.d(), y.d(), accumulate);
    ExpectMatches(y, accumulate ? "LinearForward +=" : "LinearForward");
    cpu_->LinearBackwardInput(dy.h(), w.h(), dx.h(), accumulate);
    gpu_->LinearBackwardInput(dy.d(), w.d(), dx.d(), accumulate);
    ExpectMatches(dx, "LinearBackwardInput");
  }
  cpu_->LinearBackwardWeight(dy.h(), x.h(), dw.h());
  gpu_->LinearBackwardWeight(dy.d(), x.d(), dw.d());
  ExpectMatches(dw, "LinearBackwardWeight");
  // Row views start 4-byte aligned only (a row of y is 260 bytes): cuBLASLt must be told.
  cpu_->LinearForward(x.h().Rows(1, t), w.h(), y.h().Rows(1, t), false);
  gpu_->LinearForward(x.d().Rows(1, t), w.d(), y.d().Rows(1, t), false);
  ExpectMatches(y, "LinearForward on row views");
}

// bf16 operands: the CPU computes in fp32 on the same bf16-rounded values. Products of two bf16
// are exact in fp32, so only the accumulation differs; tensor cores accumulate in fp32 but in
// their own order and alignment, hence 1e-4 here rather than 1e-5 (K = 256 terms of size ~1).
TEST_F(CudaBackendTest, Bf16LinearForwardMatchesFp32OnTheRoundedValues) {
  const int64_t t = 64, in = 256, out = 96;
  Twin x("x", DType::kF32, {t, in}), w("w", DType::kF32, {out, in}), y("y", DType::kF32, {t, out});
  Twin xb("x_bf16", DType::kBF16, {t, in}), wb("w_bf16", DType::kBF16, {out, in});
  x.Random(rng_);
  w.Random(rng_);
  for (int64_t i = 0; i < x.n(); ++i) x.hf()[i] = Bf16ToFloat(FloatToBf16(x.hf()[i]));
  for (int64_t i = 0; i < w.n(); ++i) w.hf()[i] = Bf16ToFloat(FloatToBf16(w.hf()[i]));
  FloatToBf16(x.hf(), xb.h().bf16(), x.n());
  FloatToBf16(w.hf(), wb.h().bf16(), w.n());
  xb.Up();
  wb.Up();
  cpu_->LinearForward(x.h(), w.h(), y.h(), false);
  gpu_->LinearForward(xb.d(), wb.d(), y.d(), false);
  EXPECT_LE(RelErr(y.Down(), y.hf()), 1e-4);
}

// The bf16 backward: the f32 dy is rounded to bf16 for its GEMM on both sides (the CPU in
// 512-row blocks, the device at once: dW's K-order differs), tolerance as above.
TEST_F(CudaBackendTest, Bf16LinearBackwardRoundsDyAsTheCpuDoes) {
  const int64_t t = 600, in = 64, out = 48;  // more than one of the CPU's 512-row blocks
  Twin x("x", DType::kF32, {t, in}), w("w", DType::kF32, {out, in}),
      dy("dy", DType::kF32, {t, out});
  Twin xb("x_bf16", DType::kBF16, {t, in}), wb("w_bf16", DType::kBF16, {out, in});
  Twin dx("dx", DType::kF32, {t, in}), dw("dw", DType::kF32, {out, in});
  x.Random(rng_);
  w.Random(rng_);
  dy.Random(rng_);
  gpu_->Copy(xb.d(), x.d());  // f32 -> bf16 on the device, checked against the host rounding
  gpu_->Copy(wb.d(), w.d());
  FloatToBf16(x.hf(), xb.h().bf16(), x.n());
  FloatToBf16(w.hf(), wb.h().bf16(), w.n());
  std::vector<uint16_t> got(x.n());
  gpu_->Synchronize();
  ASSERT_EQ(cudaMemcpy(got.data(), xb.d().data(), got.size() * 2, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(std::memcmp(got.data(), xb.h().bf16(), got.size() * 2), 0) << "Copy f32 -> bf16";
  cpu_->LinearBackwardInput(dy.h(), wb.h(), dx.h(), false);
  gpu_->LinearBackwardInput(dy.d(), wb.d(), dx.d(), false);
  EXPECT_LE(RelErr(dx.Down(), dx.hf()), 1e-4) << "LinearBackwardInput, bf16 w, f32 dy";
  cpu_->LinearBackwardWeight(dy.h(), xb.h(), dw.h());
  gpu_->LinearBackwardWeight(dy.d(), xb.d(), dw.d());
  EXPECT_LE(RelErr(dw.Down(), dw.hf()), 1e-4) << "LinearBackwardWeight, bf16 x, f32 dy";
  gpu_->Copy(x.d(), xb.d());  // bf16 -> f32 is exact
  const std::vector<float> widened = x.Down();
  for (int64_t i = 0; i < x.n(); ++i)
    ASSERT_EQ(widened[i], Bf16ToFloat(xb.h().bf16()[i])) << "Copy bf16 -> f32 at " << i;
}

TEST_F(CudaBackendTest, AddRowsAndDropoutMatchTheCpu) {
  Twin a("a", DType::kF32, {13, 20}), b("b", DType::kF32, {13, 20}), y("y", DType::kF32, {13, 20});
  a.Random(rng_);
  b.Random(rng_);
  cpu_->AddRows({b.hf() + 3, 20}, {a.hf() + 1, 20}, 12, 9, 0.5f);
  gpu_->AddRows({b.d().f32() + 3, 20}, {a.d().f32() + 1, 20}, 12, 9, 0.5f);
  ExpectMatches(b, "AddRows");
  cpu_->Dropout(a.h(), y.h(), 0.3f, 0x1234abcdull);
  gpu_->Dropout(a.d(), y.d(), 0.3f, 0x1234abcdull);
  // The same mask bits (runtime/dropout_hash.h) on both sides: exactly the same outputs.
  EXPECT_TRUE(SameBits(y.Down(), std::vector<float>(y.hf(), y.hf() + y.n()))) << "Dropout";
}

TEST_F(CudaBackendTest, EmbeddingForwardAndBackwardMatchTheCpu) {
  const int64_t t = 50, vocab = 17, hidden = 40;
  Twin tokens("tokens", DType::kI32, {t}), table("table", DType::kF32, {vocab, hidden});
  Twin out("out", DType::kF32, {t, hidden}), dtable("dtable", DType::kF32, {vocab, hidden});
  for (int64_t i = 0; i < t; ++i) tokens.hi()[i] = static_cast<int32_t>((i * 7 + i / 3) % vocab);
  tokens.hi()[3] = tokens.hi()[4] = tokens.hi()[9] = 5;  // repeated rows accumulate in order
  tokens.Up();
  table.Random(rng_);
  dtable.Random(rng_);
  cpu_->EmbeddingForward(tokens.h(), table.h(), out.h());
  gpu_->EmbeddingForward(tokens.d(), table.d(), out.d());
  ExpectMatches(out, "EmbeddingForward");
  out.Random(rng_);  // as dout
  cpu_->EmbeddingBackward(tokens.h(), out.h(), dtable.h());
  gpu_->EmbeddingBackward(tokens.d(), out.d(), dtable.d());
  ExpectMatches(dtable, "EmbeddingBackward");
}

TEST_F(CudaBackendTest, RmsNormForwardAndBackwardMatchTheCpu) {
  const int64_t t = 130, n = 72;  // more than one 64-row block of dw partials
  Twin x("x", DType::kF32, {t, n}), w("w", DType::kF32, {n}), y("y", DType::kF32, {t, n});
  Twin rstd("rstd", DType::kF32, {t}), dy("dy", DType::kF32, {t, n}), dx("dx", DType::kF32, {t, n});
  Twin dw("dw", DType::kF32, {n});
  for (const Twin* a : {&x, &w, &dy, &dx, &dw}) a->Random(rng_);
  cpu_->RmsNormForward(x.h(), w.h(), y.h(), rstd.h(), 1e-5f);
  gpu_->RmsNormForward(x.d(), w.d(), y.d(), rstd.d(), 1e-5f);
  ExpectMatches(y, "RmsNormForward");
  ExpectMatches(rstd, "RmsNormForward");
  for (bool accumulate : {false, true}) {
    cpu_->RmsNormBackward(dy.h(), x.h(), w.h(), rstd.h(), dx.h(), dw.h(), accumulate);
    gpu_->RmsNormBackward(dy.d(), x.d(), w.d(), rstd.d(), dx.d(), dw.d(), accumulate);
    ExpectMatches(dx, "RmsNormBackward");
    ExpectMatches(dw, "RmsNormBackward");
  }
}

TEST_F(CudaBackendTest, RopeTableAndApplyMatchTheCpu) {
  const int64_t t = 29;
  const int heads = 3, head_dim = 16, half = head_dim / 2;
  const int64_t width = 5 + heads * head_dim + 7;  // RoPE over a column slice of wider rows
  Twin pos("positions", DType::kI32, {t}), cos("cos", DType::kF32, {t, half});
  Twin sin("sin", DType::kF32, {t, half}), x("x", DType::kF32, {t, width});
  for (int64_t i = 0; i < t; ++i) pos.hi()[i] = static_cast<int32_t>(i < 11 ? i : i - 11);
  pos.hi()[t - 1] = 100000;  // a long-context position
  pos.Up();
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(500000.0, -2.0 * i / head_dim);
  cpu_->RopeTable(pos.h(), inv_freq, cos.h(), sin.h());
  gpu_->RopeTable(pos.d(), inv_freq, cos.d(), sin.d());
  ExpectMatches(cos, "RopeTable");
  ExpectMatches(sin, "RopeTable");
  cos.Up();  // both sides rotate with the CPU's table, so Apply is compared alone
  sin.Up();
  x.Random(rng_);
  for (bool inverse : {false, true}) {
    cpu_->RopeApply(x.h(), 5, heads, head_dim, cos.h(), sin.h(), inverse);
    gpu_->RopeApply(x.d(), 5, heads, head_dim, cos.d(), sin.d(), inverse);
    ExpectMatches(x, inverse ? "RopeApply inverse" : "RopeApply");
  }
}

TEST_F(CudaBackendTest, SwiGluForwardAndBackwardMatchTheCpu) {
  const int64_t t = 21, f = 45;
  Twin gu("gu", DType::kF32, {t, 2 * f}), h("h", DType::kF32, {t, f});
  Twin dh("dh", DType::kF32, {t, f}), dgu("dgu", DType::kF32, {t, 2 * f});
  gu.Random(rng_, 4.0f);
  dh.Random(rng_);
  cpu_->SwiGluForward(gu.h(), h.h());
  gpu_->SwiGluForward(gu.d(), h.d());
  ExpectMatches(h, "SwiGluForward");
  cpu_->SwiGluBackward(gu.h(), dh.h(), dgu.h());
  gpu_->SwiGluBackward(gu.d(), dh.d(), dgu.d());
  ExpectMatches(dgu, "SwiGluBackward");
}

TEST_F(CudaBackendTest, CopyZeroAddAndCopyRowsMatchTheCpu) {
  Twin a("a", DType::kF32, {9, 12}), b("b", DType::kF32, {9, 12});
  a.Random(rng_);
  b.Random(rng_);
  cpu_->Add(b.hf(), a.hf(), b.n());
  gpu_->Add(b.d().f32(), a.d().f32(), b.n());
  ExpectMatches(b, "Add");
  cpu_->CopyRows({b.hf() + 2, 12}, {a.hf() + 5, 12}, 7, 6);
  gpu_->CopyRows({b.d().f32() + 2, 12}, {a.d().f32() + 5, 12}, 7, 6);
  EXPECT_TRUE(SameBits(b.Down(), std::vector<float>(b.hf(), b.hf() + b.n()))) << "CopyRows";
  gpu_->Copy(b.d(), a.d());
  EXPECT_TRUE(SameBits(b.Down(), std::vector<float>(a.hf(), a.hf() + a.n()))) << "Copy";
  gpu_->Zero(b.d());
  EXPECT_TRUE(SameBits(b.Down(), std::vector<float>(b.n(), 0.0f))) << "Zero";
}

TEST_F(CudaBackendTest, CrossEntropyMatchesTheCpuWithIgnoredTargets) {
  const int64_t t = 23, vocab = 1000;
  Twin logits("logits", DType::kF32, {t, vocab}), targets("targets", DType::kI32, {t});
  logits.Random(rng_, 6.0f);
  for (int64_t i = 0; i < t; ++i) targets.hi()[i] = static_cast<int32_t>((i * 97) % vocab);
  targets.hi()[4] = targets.hi()[17] = kIgnoreIndex;
  targets.Up();
  const double want = cpu_->CrossEntropy(logits.h(), targets.h(), 0.25f);
  const double got = gpu_->CrossEntropy(logits.d(), targets.d(), 0.25f);
  EXPECT_NEAR(got, want, kTol * std::fabs(want));
  ExpectMatches(logits, "CrossEntropy's gradient");
}

TEST_F(CudaBackendTest, GlobalNormMatchesTheCpu) {
  Twin a("a", DType::kF32, {3, 70000}), b("b", DType::kF32, {17}), c("c", DType::kF32, {1});
  for (const Twin* x : {&a, &b, &c}) x->Random(rng_);
  const std::vector<Tensor> host = {a.h(), b.h(), c.h()}, dev = {a.d(), b.d(), c.d()};
  const double want = cpu_->GlobalNorm(host), got = gpu_->GlobalNorm(dev);
  // The CPU sums each 65536-element chunk in fp32 SIMD lanes and adds the chunks in double; the
  // device sums everything in double. So the difference is the CPU's fp32 chunk rounding, well
  // inside kTol.
  EXPECT_NEAR(got, want, kTol * want);
}

TEST_F(CudaBackendTest, FiveAdamWStepsMatchTheCpu) {
  const int64_t n = 5000;
  Twin p("param", DType::kF32, {n}), g("grad", DType::kF32, {n}), m("m", DType::kF32, {n});
  Twin v("v", DType::kF32, {n});
  p.Random(rng_);  // m and v start at zero (arenas are zeroed), as the optimizer's do
  for (int step = 1; step <= 5; ++step) {
    g.Random(rng_);
    AdamWStep s{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0, 0, step == 3 ? 0.5f : 1.0f};
    s.bias_correction1 = 1.0f - std::pow(s.beta1, static_cast<float>(step));
    s.bias_correction2 = 1.0f - std::pow(s.beta2, static_cast<float>(step));
    // Two ranges over one buffer, as the optimizer hands them.
    const int64_t cut = 1234;
    const AdamWRange host[] = {
        {p.hf(), g.hf(), m.hf(), v.hf(), cut, s},
        {p.hf() + cut, g.hf() + cut, m.hf() + cut, v.hf() + cut, n - cut, s}};
    float* dp = p.d().f32();
    const float* dg = g.d().f32();
    float *dm = m.d().f32(), *dv = v.d().f32();
    const AdamWRange dev[] = {{dp, dg, dm, dv, cut, s},
                              {dp + cut, dg + cut, dm + cut, dv + cut, n - cut, s}};
    cpu_->AdamW(host);
    gpu_->AdamW(dev);
  }
  ExpectMatches(p, "AdamW after 5 steps");
  ExpectMatches(m, "AdamW after 5 steps");
  ExpectMatches(v, "AdamW after 5 steps");
}

// Attention: q, k, v as column slices of one fused qkv projection (the model's layout).
struct AttentionCase {
  std::string name;
  int heads, kv_heads, head_dim;
  bool causal;
  std::vector<AttentionSegment> segments;
  int64_t rows;
};

void PrintTo(const AttentionCase& c, std::ostream* os) { *os << c.name; }

std::vector<AttentionSegment> Docs(std::vector<int32_t> cu) {
  return SegmentsFromCuSeqlens(cu.data(), static_cast<int64_t>(cu.size()), cu.back());
}

std::vector<AttentionCase> AttentionCases() {
  // Documents of lengths 1, 5, 1, 33, 1 and 20 (several tiles at head_dim 64 and 128).
  const std::vector<int32_t> cu = {0, 1, 6, 7, 40, 41, 61};
  // A ring-attention step: local query rows [0, 20) at positions 30.., remote keys at 20..; and
  // a second pair where no query sees a key (positions before every key: out 0, lse -inf).
  const std::vector<AttentionSegment> ring = {{0, 20, 0, 12, 30, 20}, {20, 6, 12, 9, 0, 100}};
  return {
      {"Gqa4x2d16", 4, 2, 16, true, Docs(cu), 61},
      {"Mqa8x1d64", 8, 1, 64, true, Docs(cu), 61},
      {"Mha2d128", 2, 2, 128, true, Docs(cu), 61},
      {"Gqa4x2d32NotCausal", 4, 2, 32, false, Docs(cu), 61},
      {"RingSegmentsGqa4x1d48", 4, 1, 48, true, ring, 26},
      {"OneTokenD256", 2, 1, 256, true, Docs({0, 1}), 1},
  };
}

class CudaAttentionTest : public CudaBackendTest,
                          public ::testing::WithParamInterface<AttentionCase> {};

TEST_P(CudaAttentionTest, ForwardAndBackwardMatchTheCpu) {
  const AttentionCase& c = GetParam();
  const AttentionDims dims{c.heads, c.kv_heads, c.head_dim};
  const int64_t qw = int64_t{c.heads} * c.head_dim, kw = int64_t{c.kv_heads} * c.head_dim;
  const int64_t width = qw + 2 * kw, t = c.rows;
  Twin qkv("qkv", DType::kF32, {t, width}), out("out", DType::kF32, {t, qw});
  Twin lse("lse", DType::kF32, {c.heads, t}), dout("dout", DType::kF32, {t, qw});
  Twin dqkv("dqkv", DType::kF32, {t, width});
  qkv.Random(rng_, 2.0f);
  dout.Random(rng_);
  dqkv.Random(rng_);  // backward accumulates
  out.Random(rng_);   // rows no segment covers keep their contents on both sides
  lse.Random(rng_);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  auto io_of = [&](float* base, float* o, float* l) {
    return AttentionIo{{base, width}, {base + qw, width}, {base + qw + kw, width}, {o, qw}, l, t};
  };
  const AttentionIo host = io_of(qkv.hf(), out.hf(), lse.hf());
  const AttentionIo dev = io_of(qkv.d().f32(), out.d().f32(), lse.d().f32());
  cpu_->AttentionForward(dims, c.segments, host, scale, c.causal);
  gpu_->AttentionForward(dims, c.segments, dev, scale, c.causal);
  ExpectMatches(out, "AttentionForward");
  const std::vector<float> got_lse = lse.Down();
  for (int64_t i = 0; i < lse.n(); ++i) {
    if (std::isinf(lse.hf()[i])) {
      EXPECT_EQ(got_lse[i], lse.hf()[i]) << "lse entry " << i << " (no visible key)";
    } else {
      EXPECT_NEAR(got_lse[i], lse.hf()[i], kTol * std::max(1.0f, std::fabs(lse.hf()[i])))
          << "lse entry " << i;
    }
  }
  // Backward from the CPU's forward on both sides, so it is compared alone.
  out.Up();
  lse.Up();
  float* hd = dqkv.hf();
  float* dd = dqkv.d().f32();
  cpu_->AttentionBackward(dims, c.segments, host, {dout.hf(), qw}, {hd, width}, {hd + qw, width},
                          {hd + qw + kw, width}, scale, c.causal);
  gpu_->AttentionBackward(dims, c.segments, dev, {dout.d().f32(), qw}, {dd, width},
                          {dd + qw, width}, {dd + qw + kw, width}, scale, c.causal);
  ExpectMatches(dqkv, "AttentionBackward (dq | dk | dv)");
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaAttentionTest, ::testing::ValuesIn(AttentionCases()),
                         [](const auto& info) { return info.param.name; });

TEST_F(CudaBackendTest, AttentionMergeMatchesTheCpu) {
  const AttentionDims dims{3, 1, 24};
  const int64_t rows = 10, w = 3 * 24;
  Twin out("out", DType::kF32, {rows, w}), part("part", DType::kF32, {rows, w});
  Twin lse("lse", DType::kF32, {3, rows}), plse("part_lse", DType::kF32, {3, rows});
  for (const Twin* a : {&out, &part, &lse, &plse}) a->Random(rng_, 3.0f);
  const float inf = std::numeric_limits<float>::infinity();
  lse.hf()[2] = -inf;   // no keys seen yet: takes the part as is
  plse.hf()[5] = -inf;  // an empty part: unchanged
  lse.hf()[7] = plse.hf()[7] = -inf;
  lse.Up();
  plse.Up();
  cpu_->AttentionMerge(dims, rows, {out.hf(), w}, lse.hf(), rows, {part.hf(), w}, plse.hf(), rows);
  gpu_->AttentionMerge(dims, rows, {out.d().f32(), w}, lse.d().f32(), rows, {part.d().f32(), w},
                       plse.d().f32(), rows);
  ExpectMatches(out, "AttentionMerge");
  const std::vector<float> got = lse.Down();
  for (int64_t i = 0; i < lse.n(); ++i)
    EXPECT_TRUE(got[i] == lse.hf()[i] || std::fabs(got[i] - lse.hf()[i]) <= kTol * 4)
        << "merged lse entry " << i;
}

// Two runs of the reducing kernels on the same inputs give the same bits.
TEST_F(CudaBackendTest, RunsAreBitwiseDeterministic) {
  const AttentionDims dims{4, 2, 64};
  const int64_t t = 300, qw = 256, kw = 128, width = qw + 2 * kw;
  const std::vector<AttentionSegment> segs = Docs({0, 1, 130, 131, 300});
  Twin qkv("qkv", DType::kF32, {t, width}), out("out", DType::kF32, {t, qw});
  Twin lse("lse", DType::kF32, {4, t}), dout("dout", DType::kF32, {t, qw});
  Twin dqkv("dqkv", DType::kF32, {t, width}), w("w", DType::kF32, {qw, qw});
  Twin dw("dw", DType::kF32, {qw, qw}), norm_w("norm_w", DType::kF32, {qw});
  Twin rstd("rstd", DType::kF32, {t}), dnorm("dnorm_w", DType::kF32, {qw});
  Twin y("y", DType::kF32, {t, qw}), dx("dx", DType::kF32, {t, qw});
  Twin tokens("tokens", DType::kI32, {t}), dtable("dtable", DType::kF32, {50, qw});
  for (const Twin* a : {&qkv, &dout, &w, &norm_w}) a->Random(rng_);
  for (int64_t i = 0; i < t; ++i) tokens.hi()[i] = static_cast<int32_t>(i % 7);
  tokens.Up();
  float* q = qkv.d().f32();
  const AttentionIo io{{q, width},          {q + qw, width}, {q + qw + kw, width},
                       {out.d().f32(), qw}, lse.d().f32(),   t};
  // Every output is written from inputs the run does not change, accumulators zeroed first.
  auto run = [&] {
    gpu_->Zero(dqkv.d());
    gpu_->Zero(dw.d());
    gpu_->Zero(dnorm.d());
    gpu_->Zero(dtable.d());
    gpu_->AttentionForward(dims, segs, io, 0.125f, true);
    float* d = dqkv.d().f32();
    gpu_->AttentionBackward(dims, segs, io, {dout.d().f32(), qw}, {d, width}, {d + qw, width},
                            {d + qw + kw, width}, 0.125f, true);
    gpu_->LinearBackwardWeight(dout.d(), out.d(), dw.d());
    gpu_->RmsNormForward(out.d(), norm_w.d(), y.d(), rstd.d(), 1e-5f);
    gpu_->RmsNormBackward(dout.d(), out.d(), norm_w.d(), rstd.d(), dx.d(), dnorm.d(), false);
    gpu_->EmbeddingBackward(tokens.d(), dout.d(), dtable.d());
    const double norm = gpu_->GlobalNorm(std::vector<Tensor>{dqkv.d(), dw.d(), dtable.d()});
    gpu_->Synchronize();
    return std::make_tuple(out.Down(), lse.Down(), dqkv.Down(), dw.Down(), dnorm.Down(),
                           dtable.Down(), norm);
  };
  const auto first = run();
  const auto second = run();
  EXPECT_TRUE(SameBits(std::get<0>(first), std::get<0>(second))) << "attention out";
  EXPECT_TRUE(SameBits(std::get<1>(first), std::get<1>(second))) << "attention lse";
  EXPECT_TRUE(SameBits(std::get<2>(first), std::get<2>(second))) << "attention dq, dk, dv";
  EXPECT_TRUE(SameBits(std::get<3>(first), std::get<3>(second))) << "LinearBackwardWeight";
  EXPECT_TRUE(SameBits(std::get<4>(first), std::get<4>(second))) << "RMSNorm dw";
  EXPECT_TRUE(SameBits(std::get<5>(first), std::get<5>(second))) << "embedding dtable";
  EXPECT_EQ(std::get<6>(first), std::get<6>(second)) << "GlobalNorm";
}

// The entry checks: one line naming the tensor or pointer and the problem.
TEST_F(CudaBackendTest, BadInputsAreRefusedByName) {
  Twin x("x", DType::kF32, {4, 8}), w("w", DType::kF32, {8}), y("y", DType::kF32, {4, 8});
  Twin rstd("rstd", DType::kF32, {4}), tokens("tokens", DType::kI32, {4});
  Twin table("table", DType::kF32, {5, 8}), targets("targets", DType::kI32, {4});
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message([&] {
              gpu_->RmsNormForward(x.h(), w.d(), y.d(), rstd.d(), 1e-5f);
            }).find("tensor 'x' is on cpu, expected cuda"),
            std::string::npos);
  EXPECT_NE(message([&] {
              gpu_->RmsNormForward(x.d(), w.d(), y.d(), tokens.d(), 1e-5f);
            }).find("tensor 'tokens' is i32, expected f32"),
            std::string::npos);
  EXPECT_NE(
      message([&] { gpu_->Add(x.hf(), x.d().f32(), 4); }).find("Add's y is not CUDA device memory"),
      std::string::npos);
  for (int i = 0; i < 4; ++i) tokens.hi()[i] = i == 2 ? 9 : i;
  tokens.Up();
  EXPECT_NE(message([&] {
              gpu_->EmbeddingForward(tokens.d(), table.d(), y.d());
            }).find("token id 9 at position 2 is outside the vocabulary [0, 5)"),
            std::string::npos);
  for (int i = 0; i < 4; ++i) targets.hi()[i] = i == 1 ? -3 : i;
  targets.Up();
  EXPECT_NE(message([&] {
              gpu_->CrossEntropy(y.d(), targets.d(), 1.0f);
            }).find("target -3 at position 1 is outside the vocabulary [0, 8)"),
            std::string::npos);
  const AttentionDims big{1, 1, 512};
  const std::vector<AttentionSegment> one = {{0, 1, 0, 1, 0, 0}};
  const AttentionIo io{{x.d().f32(), 512}, {x.d().f32(), 512}, {x.d().f32(), 512},
                       {y.d().f32(), 512}, rstd.d().f32(),     1};
  EXPECT_NE(message([&] {
              gpu_->AttentionForward(big, one, io, 1.0f, true);
            }).find("head_dim 512 is larger than the CUDA attention kernels' 256"),
            std::string::npos);
}

}  // namespace
}  // namespace seqmesh
