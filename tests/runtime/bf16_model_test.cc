// training.precision = "bf16" (ModelOptions::precision): the backend's bf16 linear entries
// against fp32 GEMMs on the same rounded numbers, the conversions bit for bit, and the bf16 model
// against the fp32 one (loss, gradients, a short training run), thread-count independence, and
// checkpointed layers recomputing the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/backend.h"
#include "runtime/dtype.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

std::vector<uint16_t> Round(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = FloatToBf16(v[i]);
  return out;
}
std::vector<float> Widen(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Bf16ToFloat(v[i]);
  return out;
}

TEST(Bf16Backend, CopyRoundsToNearestEvenAndWidensExactly) {
  auto be = MakeBackend(Device::kCpu, ExecutionContext{2});
  std::vector<float> x = testing::RandomVector(200003, 1, 3.0f);
  x[0] = 1.0f + 0x1.0p-8f;  // a tie: rounds to even (1.0)
  x[1] = 1.0f + 0x1.8p-8f;  // above half: rounds up
  std::vector<uint16_t> h(x.size());
  std::vector<float> back(x.size());
  const Tensor tx("x", DType::kF32, {static_cast<int64_t>(x.size())}, x.data());
  const Tensor th("h", DType::kBF16, {static_cast<int64_t>(x.size())}, h.data());
  const Tensor tb("back", DType::kF32, {static_cast<int64_t>(x.size())}, back.data());
  be->Copy(th, tx);
  be->Copy(tb, th);
  EXPECT_EQ(h, Round(x));
  EXPECT_EQ(back, Widen(h));
  EXPECT_EQ(h[0], 0x3f80);
  EXPECT_EQ(h[1], 0x3f81);
  std::vector<int32_t> ids(x.size());
  const Tensor ti("ids", DType::kI32, {static_cast<int64_t>(x.size())}, ids.data());
  EXPECT_TRUE(testing::ThrowsWith([&] { be->Copy(ti, tx); }, "only f32 <-> bf16 converts"));
}

// Each bf16 linear entry equals the fp32 one on the rounded inputs (dy rounded as well): the
// same products, summed in fp32 in the kernel's order.
TEST(Bf16Backend, LinearEntriesEqualFp32OnTheRoundedNumbers) {
  for (const int64_t t : {67, 1100}) {  // 1100 rows: dy is rounded 512 rows at a time
    SCOPED_TRACE(t);
    auto be = MakeBackend(Device::kCpu, ExecutionContext{2});
    const int64_t in = 48, out = 40;
    const std::vector<uint16_t> x16 = Round(testing::RandomVector(t * in, 2)),
                                w16 = Round(testing::RandomVector(out * in, 3));
    std::vector<float> x = Widen(x16), w = Widen(w16);
    const std::vector<float> dy0 = testing::RandomVector(t * out, 4);
    std::vector<float> dy = dy0, dy_rounded = Widen(Round(dy0));
    auto f32 = [](const char* n, std::vector<float>& v, Shape s) {
      return Tensor(n, DType::kF32, s, v.data());
    };
    auto b16 = [](const char* n, const std::vector<uint16_t>& v, Shape s) {
      return Tensor(n, DType::kBF16, s, const_cast<uint16_t*>(v.data()));
    };
    std::vector<float> y(t * out, 0.5f), y_ref(t * out, 0.5f);
    be->LinearForward(b16("x", x16, {t, in}), b16("w", w16, {out, in}), f32("y", y, {t, out}),
                      true);
    be->LinearForward(f32("x", x, {t, in}), f32("w", w, {out, in}), f32("y", y_ref, {t, out}),
                      true);
    // oneDNN's bf16 matmul may order the fp32 sums differently from its sgemm (AMX tiles): 1e-6
    // of the scale is fp32 reassociation (over up to 1100 terms); emulated (AVX2) it is sgemm.
    EXPECT_LT(testing::RelError(y.data(), y_ref.data(), t * out), 1e-6);
    std::vector<float> dx(t * in), dx_ref(t * in);
    be->LinearBackwardInput(f32("dy", dy, {t, out}), b16("w", w16, {out, in}),
                            f32("dx", dx, {t, in}), false);
    be->LinearBackwardInput(f32("dy", dy_rounded, {t, out}), f32("w", w, {out, in}),
                            f32("dx", dx_ref, {t, in}), false);
    EXPECT_LT(testing::RelError(dx.data(), dx_ref.data(), t * in), 1e-6);
    EXPECT_EQ(dy, dy0);  // the caller's dy is not rounded in place
    std::vector<float> dw(out * in, 1.0f), dw_ref(out * in, 1.0f);
    be->LinearBackwardWeight(f32("dy", dy, {t, out}), b16("x", x16, {t, in}),
                             f32("dw", dw, {out, in}));
    be->LinearBackwardWeight(f32("dy", dy_rounded, {t, out}), f32("x", x, {t, in}),
                             f32("dw", dw_ref, {out, in}));
    EXPECT_LT(testing::RelError(dw.data(), dw_ref.data(), out * in), 1e-6);
    EXPECT_TRUE(testing::ThrowsWith(
        [&] {
          be->LinearForward(f32("x", x, {t, in}), b16("w", w16, {out, in}), f32("y", y, {t, out}),
                            false);
        },
        "tensor 'x' is f32, expected bf16"));
  }
}

ModelConfig Small() {
  ModelConfig c;
  c.vocab = 97;
  c.hidden = 64;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 128;
  return c;
}

struct Docs {
  std::vector<int32_t> tokens, targets, cu = {0, 40, 41, 96};
  Docs() {
    for (int i = 0; i < 96; ++i) {
      tokens.push_back((i * 13 + 5) % 97);
      targets.push_back((i * 13 + 18) % 97);  // a learnable next-token rule
    }
    targets[39] = targets[40] = kIgnoreIndex;
  }
  Batch View() const { return Batch{tokens.data(), targets.data(), cu.data(), 3, 96, nullptr}; }
};

Model Make(Precision p, int threads = 1, bool checkpoint = false) {
  ModelOptions o;
  o.max_tokens = 128;
  o.precision = p;
  o.backend = MakeBackend(Device::kCpu, ExecutionContext{threads});
  o.checkpoint_layers.assign(2, checkpoint);
  Model m(Small(), o);
  m.InitRandom(3, 0.1f);
  return m;
}

TEST(Bf16Model, LossAndGradientsAreFp32sWithinBf16Rounding) {
  Model f = Make(Precision::kF32), h = Make(Precision::kBf16);
  EXPECT_LT(h.activation_bytes(), f.activation_bytes());  // xn1, attn, xn2, h and xf halved
  const Docs d;
  f.ZeroGrad();
  h.ZeroGrad();
  const float lf = f.Forward(d.View(), 94.0f), lh = h.Forward(d.View(), 94.0f);
  // bf16 keeps 8 significant bits (relative rounding up to 2^-9 per value) on the GEMM inputs;
  // the loss, an average over 94 tokens, moves far less than that (9e-5 relative measured).
  EXPECT_NEAR(lh, lf, 5e-4 * lf);
  EXPECT_NE(lh, lf);  // bf16 did run
  f.Backward();
  h.Backward();
  for (size_t i = 0; i < f.grads().size(); ++i) {
    const Tensor& a = h.grads()[i];
    const Tensor& b = f.grads()[i];
    // Gradients pass through several rounded GEMMs (dy is rounded too): about 1% of each
    // tensor's scale measured (0.6 to 1.3%), as bf16 autocast gives; a wrong term (a missing
    // transpose or accumulate) is of the order of the gradient itself.
    EXPECT_LT(testing::RelError(a.f32(), b.f32(), a.numel()), 3e-2) << a.name();
  }
}

TEST(Bf16Model, TrainsLikeFp32AndIsThreadAndCheckpointIndependent) {
  Model f = Make(Precision::kF32), h1 = Make(Precision::kBf16, 1),
        h2 = Make(Precision::kBf16, 2, /*checkpoint=*/true);
  AdamWConfig oc;
  AdamW af(f.trainable(), oc, {f.shared_backend()}), a1(h1.trainable(), oc, {h1.shared_backend()}),
      a2(h2.trainable(), oc, {h2.shared_backend()});
  const Docs d;
  float first = 0, lf = 0, l1 = 0, l2 = 0;
  for (int s = 0; s < 12; ++s) {
    for (auto [m, a, l] : {std::tuple{&f, &af, &lf}, {&h1, &a1, &l1}, {&h2, &a2, &l2}}) {
      m->ZeroGrad();
      *l = m->Forward(d.View(), 94.0f);
      m->Backward();
      a->Step(m->trainable(), m->grads(), 3e-3f, 1.0f);
    }
    if (s == 0) first = lf;
    ASSERT_EQ(l1, l2) << "step " << s << ": 1 thread against 2 with checkpointed layers";
  }
  for (size_t i = 0; i < h1.params().size(); ++i)
    ASSERT_EQ(0, std::memcmp(h1.params()[i].data(), h2.params()[i].data(), h1.params()[i].bytes()))
        << h1.params()[i].name();
  EXPECT_LT(lf, 0.8f * first);  // the rule is being learned
  // bf16 follows fp32's trajectory: after 12 steps the loss is 3e-4 relative from fp32's.
  EXPECT_NEAR(l1, lf, 3e-3 * lf);
}

TEST(Bf16Model, LoraOverABf16BaseStartsAsTheBase) {
  ModelOptions o;
  o.max_tokens = 128;
  o.precision = Precision::kBf16;
  o.lora.rank = 4;
  o.lora.alpha = 8;
  o.lora.targets = {"q_proj", "down_proj"};
  Model lora(Small(), o);
  lora.InitRandom(3, 0.1f);
  Model base = Make(Precision::kBf16);
  const Docs d;
  EXPECT_EQ(base.Forward(d.View(), 94.0f), lora.Forward(d.View(), 94.0f));
  lora.ZeroGrad();
  lora.Forward(d.View(), 94.0f);
  lora.Backward();
  double sum = 0;
  for (const Tensor& g : lora.grads())
    for (int64_t i = 0; i < g.numel(); ++i) sum += std::fabs(g.f32()[i]);
  EXPECT_GT(sum, 0);  // dB is not zero (B = 0 makes only dA vanish)
  EXPECT_TRUE(std::isfinite(sum));
}

}  // namespace
}  // namespace seqmesh
