// The model against PyTorch (tests/reference/make_fixtures.py, computed in float64): logits,
// loss, every parameter gradient, and five AdamW steps with clipping and warmup, for GQA on and
// off, tied and untied embeddings, and activation checkpointing on and off.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "tests/reference/fixture.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using testing::Fixture;
using testing::RelError;

// fp32 against a float64 reference. Gradients of a few-thousand-FLOP chain hold 1e-5; the
// issue's bound is 1e-4.
constexpr double kTol = 1e-4;

struct Case {
  std::string fixture;
  bool checkpoint;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return info.param.fixture + (info.param.checkpoint ? "_checkpointed" : "_stored");
}

ModelConfig ConfigOf(const Fixture& f) {
  ModelConfig c;
  c.vocab = f.ScalarInt("config.vocab");
  c.hidden = f.ScalarInt("config.hidden");
  c.layers = f.ScalarInt("config.layers");
  c.heads = f.ScalarInt("config.heads");
  c.kv_heads = f.ScalarInt("config.kv_heads");
  c.ffn = f.ScalarInt("config.ffn");
  c.tie_embeddings = f.ScalarInt("config.tie_embeddings") != 0;
  c.rope_theta = f.Scalar("config.rope_theta");
  c.norm_eps = f.Scalar("config.norm_eps");
  return c;
}

struct Loaded {
  Fixture fixture;
  Model model;
  Batch batch;
  float normalizer;
};

Loaded Load(const Case& c, int64_t extra_capacity = 0, int64_t head_chunk_tokens = 0) {
  Fixture f = Fixture::Load(std::string(SEQMESH_FIXTURE_DIR) + "/" + c.fixture + ".bin");
  ModelConfig config = ConfigOf(f);
  const Tensor& tokens = f.Get("batch.tokens");
  ModelOptions options;
  options.max_tokens = tokens.numel() + extra_capacity;
  options.checkpoint_layers.assign(config.layers, c.checkpoint);
  options.head_chunk_tokens = head_chunk_tokens;
  Model model(config, options);
  for (const Tensor& p : model.params()) {
    const Tensor& ref = f.Get("param." + p.name());
    EXPECT_EQ(ref.shape(), p.shape()) << p.name();
    std::memcpy(p.f32(), ref.f32(), p.bytes());
  }
  const Tensor& cu = f.Get("batch.cu_seqlens");
  Batch b;
  b.tokens = tokens.i32();
  b.targets = f.Get("batch.targets").i32();
  b.cu_seqlens = cu.i32();
  b.num_docs = cu.numel() - 1;
  b.num_tokens = tokens.numel();
  float normalizer = f.Scalar("batch.normalizer");
  return {std::move(f), std::move(model), b, normalizer};
}

class ModelReferenceTest : public ::testing::TestWithParam<Case> {};

int64_t Aligned64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

TEST_P(ModelReferenceTest, LogitsLossAndEveryGradientMatchPyTorch) {
  // Extra capacity: activations sized for more tokens than the batch must not change results.
  Loaded l = Load(GetParam(), /*extra_capacity=*/7);
  const Tensor& ref_logits = l.fixture.Get("logits");
  std::vector<float> logits(ref_logits.numel());
  l.model.ZeroGrad();
  const float loss = l.model.Forward(l.batch, l.normalizer, logits.data());
  l.model.Backward();

  EXPECT_LT(RelError(logits.data(), ref_logits.f32(), ref_logits.numel()), kTol);
  EXPECT_NEAR(loss, l.fixture.Scalar("loss"), kTol * l.fixture.Scalar("loss"));
  int compared = 0;
  for (const Tensor& g : l.model.grads()) {
    const Tensor& ref = l.fixture.Get(g.name());  // "grad.<hf name>"
    ASSERT_EQ(ref.shape(), g.shape()) << g.name();
    const double err = RelError(g.f32(), ref.f32(), g.numel());
    EXPECT_LT(err, kTol) << g.name();
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>(l.fixture.Names("grad.").size()));
}

// The head in chunks of 5 rows (ModelOptions::head_chunk_tokens; a real vocabulary gets chunks
// of 64 MiB): the loss is summed chunk by chunk and backward recomputes each chunk's logits;
// still PyTorch's logits, loss and every gradient, with a logits buffer of 5 rows.
// Both ways: the head's backward in Forward (Batch::backward_follows, a training pass) or each
// chunk's logits recomputed in Backward; a forward-only pass in between leaves the gradients.
TEST_P(ModelReferenceTest, TheHeadInChunksMatchesPyTorch) {
  Loaded l = Load(GetParam(), 0, /*head_chunk_tokens=*/5);
  const Tensor& ref_logits = l.fixture.Get("logits");
  ASSERT_GT(l.batch.num_tokens, 10) << "the fixture should span several chunks";
  for (bool in_forward : {false, true}) {
    Batch b = l.batch;
    b.backward_follows = in_forward;
    if (in_forward) {  // an evaluation after a training pass's Forward must not touch its work
      l.model.ZeroGrad();
      l.model.Forward(b, l.normalizer);
      auto grads = [&] {
        std::vector<float> all;
        for (const Tensor& g : l.model.grads()) all.insert(all.end(), g.f32(), g.f32() + g.numel());
        return all;
      };
      const std::vector<float> before = grads();
      l.model.Forward(l.batch, l.normalizer);
      EXPECT_EQ(grads(), before) << "a forward-only pass changed the gradients";
    }
    std::vector<float> logits(ref_logits.numel());
    l.model.ZeroGrad();
    const float loss = l.model.Forward(b, l.normalizer, logits.data());
    l.model.Backward();
    const std::string how = in_forward ? "head backward in Forward" : "recomputed in Backward";
    EXPECT_LT(RelError(logits.data(), ref_logits.f32(), ref_logits.numel()), kTol) << how;
    EXPECT_NEAR(loss, l.fixture.Scalar("loss"), kTol * l.fixture.Scalar("loss")) << how;
    for (const Tensor& g : l.model.grads()) {
      const Tensor& ref = l.fixture.Get(g.name());
      EXPECT_LT(RelError(g.f32(), ref.f32(), g.numel()), kTol) << g.name() << ", " << how;
    }
  }
  Loaded whole = Load(GetParam());
  const int64_t vocab = l.model.config().vocab;
  EXPECT_EQ(whole.model.activation_bytes() - l.model.activation_bytes(),
            Aligned64((l.batch.num_tokens) * vocab * 4) - Aligned64(5 * vocab * 4));
}

TEST_P(ModelReferenceTest, FiveAdamWStepsWithClippingMatchPyTorch) {
  Loaded l = Load(GetParam());
  const Fixture& f = l.fixture;
  AdamWConfig oc;
  oc.beta1 = f.Scalar("optim.beta1");
  oc.beta2 = f.Scalar("optim.beta2");
  oc.eps = f.Scalar("optim.eps");
  oc.weight_decay = f.Scalar("optim.weight_decay");
  LrSchedule schedule{f.Scalar("optim.max_lr"), f.Scalar("optim.min_lr"),
                      f.ScalarInt("optim.warmup"), f.ScalarInt("optim.total_steps")};
  const float clip = f.Scalar("optim.clip");
  AdamW adamw(l.model.params(), oc);
  const Tensor& losses = f.Get("train.losses");
  const Tensor& norms = f.Get("train.grad_norms");
  const Tensor& lrs = f.Get("train.lrs");
  for (int step = 0; step < losses.numel(); ++step) {
    l.model.ZeroGrad();
    const float loss = l.model.Forward(l.batch, l.normalizer);
    l.model.Backward();
    const double norm = GlobalNorm(l.model.grads());
    const float lr = schedule.At(step);
    EXPECT_NEAR(lr, lrs.f32()[step], 1e-6 * lrs.f32()[step]) << "step " << step;
    // Optimizer steps compound the forward error; still well inside 1e-4.
    EXPECT_NEAR(loss, losses.f32()[step], kTol * losses.f32()[step]) << "step " << step;
    EXPECT_NEAR(norm, norms.f32()[step], kTol * norms.f32()[step]) << "step " << step;
    adamw.Step(l.model.params(), l.model.grads(), lr, ClipScale(norm, clip));
  }
  // Loosened for parameters after five updates: AdamW divides each gradient element by its own
  // running RMS, so an element whose gradient is near zero gets an update of about lr whose
  // value is set by fp32 rounding of that tiny gradient. Such elements move up to ~1.3e-4 of the
  // tensor's scale (seen on gqa_tied_theta); the losses above still hold 1e-4.
  constexpr double kParamTol = 3e-4;
  for (const Tensor& p : l.model.params()) {
    const Tensor& ref = f.Get("final." + p.name());
    EXPECT_LT(RelError(p.f32(), ref.f32(), p.numel()), kParamTol) << p.name();
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelReferenceTest,
                         ::testing::Values(Case{"gqa_untied", false}, Case{"gqa_untied", true},
                                           Case{"mha_tied", false}, Case{"mha_tied", true},
                                           Case{"gqa_tied_theta", false},
                                           Case{"gqa_tied_theta", true}),
                         CaseName);

// Recomputation runs the same deterministic kernels on the same inputs, so checkpointing must
// change nothing at all: gradients are compared bit for bit.
TEST(ModelCheckpointing, GradientsAreBitwiseIdentical) {
  for (const char* name : {"gqa_untied", "mha_tied", "gqa_tied_theta"}) {
    Loaded stored = Load({name, false});
    Loaded recomputed = Load({name, true});
    stored.model.ZeroGrad();
    recomputed.model.ZeroGrad();
    const float a = stored.model.Forward(stored.batch, stored.normalizer);
    const float b = recomputed.model.Forward(recomputed.batch, recomputed.normalizer);
    EXPECT_EQ(a, b) << name;
    stored.model.Backward();
    recomputed.model.Backward();
    for (size_t i = 0; i < stored.model.grads().size(); ++i) {
      const Tensor& ga = stored.model.grads()[i];
      const Tensor& gb = recomputed.model.grads()[i];
      EXPECT_EQ(0, std::memcmp(ga.data(), gb.data(), ga.bytes())) << name << " " << ga.name();
    }
  }
}

// Token-level loss: two micro-batches with the whole batch's normalizer give the whole batch's
// gradient (here: documents {0,1} and {2,3} of the fixture batch).
TEST(ModelMicroBatches, GradientsOfSplitBatchAddUpToWholeBatch) {
  Loaded whole = Load({"gqa_untied", false});
  Loaded split = Load({"gqa_untied", false});
  whole.model.ZeroGrad();
  const float whole_loss = whole.model.Forward(whole.batch, whole.normalizer);
  whole.model.Backward();

  const int32_t* cu = whole.batch.cu_seqlens;
  split.model.ZeroGrad();
  float split_loss = 0.0f;
  for (int part = 0; part < 2; ++part) {
    const int d0 = 2 * part, d1 = 2 * part + 2;
    std::vector<int32_t> local_cu;
    for (int d = d0; d <= d1; ++d) local_cu.push_back(cu[d] - cu[d0]);
    Batch b;
    b.tokens = split.batch.tokens + cu[d0];
    b.targets = split.batch.targets + cu[d0];
    b.cu_seqlens = local_cu.data();
    b.num_docs = d1 - d0;
    b.num_tokens = cu[d1] - cu[d0];
    split_loss += split.model.Forward(b, split.normalizer);
    split.model.Backward();
  }
  EXPECT_NEAR(split_loss, whole_loss, 1e-6 * whole_loss);
  for (size_t i = 0; i < whole.model.grads().size(); ++i) {
    const Tensor& a = split.model.grads()[i];
    const Tensor& b = whole.model.grads()[i];
    EXPECT_LT(RelError(a.f32(), b.f32(), a.numel()), 1e-5) << a.name();
  }
}

// The gradient-ready hook fires once per layer in reverse order, then -1, and when layer l is
// reported its gradients are already final (equal to their values after Backward returns).
TEST(ModelHooks, LayerGradientsReadyInReverseOrderAndFinal) {
  Fixture f = Fixture::Load(std::string(SEQMESH_FIXTURE_DIR) + "/gqa_tied_theta.bin");
  Loaded plain = Load({"gqa_tied_theta", false});
  ModelConfig config = ConfigOf(f);
  ModelOptions options;
  options.max_tokens = plain.batch.num_tokens;
  std::vector<int64_t> order;
  std::vector<std::vector<float>> snapshots;
  Model* self = nullptr;
  options.on_layer_grads_ready = [&](int64_t layer) {
    order.push_back(layer);
    if (layer < 0) return;
    const Tensor& g = self->grads()[1 + 9 * layer + 1];  // that layer's fused q_proj weight
    snapshots.emplace_back(g.f32(), g.f32() + g.numel());
  };
  Model model(config, options);
  self = &model;
  for (size_t i = 0; i < model.params().size(); ++i)
    std::memcpy(model.params()[i].data(), plain.model.params()[i].data(),
                model.params()[i].bytes());
  model.ZeroGrad();
  model.Forward(plain.batch, plain.normalizer);
  model.Backward();
  EXPECT_EQ(order, (std::vector<int64_t>{2, 1, 0, -1}));
  ASSERT_EQ(snapshots.size(), 3u);
  for (int64_t l = 0; l < 3; ++l) {
    const Tensor& g = model.grads()[1 + 9 * l + 1];
    EXPECT_EQ(g.name(), "grad.model.layers." + std::to_string(l) + ".self_attn.q_proj.weight");
    EXPECT_EQ(snapshots[2 - l], std::vector<float>(g.f32(), g.f32() + g.numel()));
  }
}

}  // namespace
}  // namespace seqmesh
