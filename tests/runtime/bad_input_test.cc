// Every public entry point rejects bad input with a seqmesh::Error whose message names the
// problem (the field, the tensor, the offending entry), before doing any work. Tests assert on
// the message's text, so a check that fires for the wrong reason fails too.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "runtime/attention.h"
#include "runtime/cpu/attention.h"
#include "runtime/cpu/matmul.h"
#include "runtime/execution_context.h"
#include "runtime/layers.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "runtime/tensor.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using testing::ThrowsWith;

// ---------------------------------------------------------------------------------------------
// ModelConfig, checked when a Model is built.

ModelConfig TinyConfig() {
  ModelConfig c;
  c.vocab = 37;
  c.hidden = 32;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 48;
  return c;
}

// The rejection is by Model's constructor, not only by Validate().
::testing::AssertionResult ModelRejects(const ModelConfig& c, const std::string& needle) {
  ModelOptions o;
  o.max_tokens = 8;
  return ThrowsWith([&] { Model m(c, o); }, needle);
}

TEST(BadModelConfig, TinyConfigIsAccepted) {
  EXPECT_NO_THROW(TinyConfig().Validate());
  ModelOptions o;
  o.max_tokens = 8;
  EXPECT_NO_THROW(Model(TinyConfig(), o));
}

TEST(BadModelConfig, HeadsNotDividingHidden) {
  ModelConfig c = TinyConfig();
  c.heads = 5;
  c.kv_heads = 5;
  EXPECT_TRUE(ModelRejects(c, "model.heads (5) must divide model.hidden (32)"));
}

TEST(BadModelConfig, KvHeadsNotDividingHeads) {
  ModelConfig c = TinyConfig();
  c.kv_heads = 3;
  EXPECT_TRUE(ModelRejects(c, "model.kv_heads (3) must divide model.heads (4)"));
  c.kv_heads = 8;  // more kv heads than query heads
  EXPECT_TRUE(ModelRejects(c, "model.kv_heads (8) must divide model.heads (4)"));
}

TEST(BadModelConfig, OddHeadDim) {
  ModelConfig c = TinyConfig();
  c.hidden = 36;  // head_dim 9
  EXPECT_TRUE(ModelRejects(c, "head_dim = hidden / heads = 9 must be even"));
}

TEST(BadModelConfig, ZeroOrNegativeSizes) {
  ModelConfig c = TinyConfig();
  c.layers = 0;
  EXPECT_TRUE(ModelRejects(c, "model.layers must be >= 1, got 0"));
  c = TinyConfig();
  c.vocab = 0;
  EXPECT_TRUE(ModelRejects(c, "model.vocab must be >= 1, got 0"));
  c = TinyConfig();
  c.hidden = -32;
  EXPECT_TRUE(ModelRejects(c, "model.hidden must be >= 1, got -32"));
  c = TinyConfig();
  c.heads = 0;
  EXPECT_TRUE(ModelRejects(c, "model.heads must be >= 1, got 0"));
  c = TinyConfig();
  c.kv_heads = 0;
  EXPECT_TRUE(ModelRejects(c, "model.kv_heads must be >= 1, got 0"));
  c = TinyConfig();
  c.ffn = 0;
  EXPECT_TRUE(ModelRejects(c, "model.ffn must be >= 1, got 0"));
}

TEST(BadModelConfig, NonPositiveThetaOrEps) {
  ModelConfig c = TinyConfig();
  c.rope_theta = 0.0f;
  EXPECT_TRUE(ModelRejects(c, "model.rope_theta must be > 0"));
  c = TinyConfig();
  c.norm_eps = -1e-5f;
  EXPECT_TRUE(ModelRejects(c, "model.norm_eps must be > 0"));
  c.norm_eps = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(ModelRejects(c, "model.norm_eps must be > 0"));
}

TEST(BadModelOptions, ZeroCapacityAndWrongCheckpointList) {
  ModelOptions o;
  o.max_tokens = 0;
  EXPECT_TRUE(ThrowsWith([&] { Model m(TinyConfig(), o); }, "max_tokens must be >= 1, got 0"));
  o.max_tokens = 8;
  o.checkpoint_layers = {true, false, true};
  EXPECT_TRUE(ThrowsWith([&] { Model m(TinyConfig(), o); },
                         "checkpoint_layers has 3 entries for 2 layers"));
}

// ---------------------------------------------------------------------------------------------
// Batches given to Model::Forward, and the Forward/Backward protocol.

class BadBatch : public ::testing::Test {
 protected:
  static constexpr int64_t kMaxTokens = 16;
  // Documents of lengths 5 and 5 (T = 10).
  BadBatch()
      : model_(TinyConfig(), ModelOptions{kMaxTokens, {}, {}, {}, {}, nullptr}),
        tokens_(kMaxTokens + 1, 1),
        targets_(kMaxTokens + 1, 2),
        cu_{0, 5, 10} {
    model_.InitRandom(1);
  }
  Batch MakeBatch() {
    Batch b;
    b.tokens = tokens_.data();
    b.targets = targets_.data();
    b.cu_seqlens = cu_.data();
    b.num_docs = static_cast<int64_t>(cu_.size()) - 1;
    b.num_tokens = 10;
    return b;
  }
  ::testing::AssertionResult ForwardRejects(const Batch& b, const std::string& needle,
                                            float normalizer = 8.0f) {
    return ThrowsWith([&] { model_.Forward(b, normalizer); }, needle);
  }

  Model model_;
  std::vector<int32_t> tokens_, targets_, cu_;
};

TEST_F(BadBatch, ValidBatchIsAccepted) {
  float loss = 0;
  EXPECT_NO_THROW(loss = model_.Forward(MakeBatch(), 8.0f));
  EXPECT_GT(loss, 0.0f);
  EXPECT_NO_THROW(model_.Backward());
}

TEST_F(BadBatch, CuSeqlensNotEndingAtTokenCount) {
  cu_ = {0, 5, 9};
  EXPECT_TRUE(ForwardRejects(MakeBatch(), "cu_seqlens ends at 9 but the batch has 10 tokens"));
}

TEST_F(BadBatch, DecreasingCuSeqlens) {
  cu_ = {0, 6, 4, 10};
  EXPECT_TRUE(ForwardRejects(MakeBatch(),
                             "cu_seqlens must be non-decreasing: cu_seqlens[2] = 4 < "
                             "cu_seqlens[1] = 6"));
}

TEST_F(BadBatch, CuSeqlensNotStartingAtZero) {
  cu_ = {1, 5, 10};
  EXPECT_TRUE(ForwardRejects(MakeBatch(), "cu_seqlens must start at 0, got 1"));
}

TEST_F(BadBatch, NoDocuments) {
  Batch b = MakeBatch();
  b.num_docs = 0;
  EXPECT_TRUE(ForwardRejects(b, "cu_seqlens needs at least 2 entries (one document), got 1"));
}

TEST_F(BadBatch, MoreTokensThanCapacity) {
  Batch b = MakeBatch();
  b.num_tokens = kMaxTokens + 1;
  cu_ = {0, static_cast<int32_t>(kMaxTokens + 1)};
  b.num_docs = 1;
  EXPECT_TRUE(ForwardRejects(b,
                             "the micro-batch has 17 tokens, more than the model's capacity "
                             "max_tokens = 16"));
}

TEST_F(BadBatch, EmptyBatchOrMissingArrays) {
  Batch b = MakeBatch();
  b.num_tokens = 0;
  EXPECT_TRUE(ForwardRejects(b, "the micro-batch is empty"));
  b = MakeBatch();
  b.targets = nullptr;
  EXPECT_TRUE(ForwardRejects(b, "the micro-batch needs tokens, targets and cu_seqlens"));
}

TEST_F(BadBatch, TokenIdOutsideVocabulary) {
  tokens_[3] = 37;
  EXPECT_TRUE(
      ForwardRejects(MakeBatch(), "token id 37 at position 3 is outside the vocabulary [0, 37)"));
  tokens_[3] = -1;
  EXPECT_TRUE(
      ForwardRejects(MakeBatch(), "token id -1 at position 3 is outside the vocabulary [0, 37)"));
}

TEST_F(BadBatch, TargetOutsideVocabularyThatIsNotIgnoreIndex) {
  targets_[7] = kIgnoreIndex;
  EXPECT_NO_THROW(model_.Forward(MakeBatch(), 8.0f));
  targets_[7] = 37;
  EXPECT_TRUE(ForwardRejects(MakeBatch(), "target 37 at position 7 is outside the vocabulary"));
  targets_[7] = -1;
  EXPECT_TRUE(ForwardRejects(MakeBatch(), "target -1 at position 7 is outside the vocabulary"));
}

TEST_F(BadBatch, NonPositiveNormalizer) {
  EXPECT_TRUE(ForwardRejects(MakeBatch(), "the loss normalizer must be > 0, got 0", 0.0f));
  EXPECT_TRUE(ForwardRejects(MakeBatch(), "the loss normalizer must be > 0, got -3", -3.0f));
  EXPECT_TRUE(ForwardRejects(MakeBatch(), "the loss normalizer must be > 0",
                             std::numeric_limits<float>::quiet_NaN()));
}

TEST_F(BadBatch, NegativePosition) {
  std::vector<int32_t> pos = {0, 1, 2, 3, 4, 0, 1, -2, 3, 4};
  Batch b = MakeBatch();
  b.positions = pos.data();
  EXPECT_TRUE(ForwardRejects(b, "position -2 of token 7 is negative"));
}

TEST_F(BadBatch, SplitDocumentOutOfRange) {
  Batch b = MakeBatch();
  b.split_doc = 2;
  EXPECT_TRUE(ForwardRejects(b, "split_doc 2 is not a document of the micro-batch (2 documents)"));
}

TEST_F(BadBatch, BackwardWithoutForward) {
  EXPECT_TRUE(ThrowsWith([&] { model_.Backward(); }, "Backward() needs a Forward() first"));
}

TEST_F(BadBatch, SecondBackwardAfterOneForward) {
  model_.Forward(MakeBatch(), 8.0f);
  model_.Backward();
  EXPECT_TRUE(ThrowsWith([&] { model_.Backward(); }, "Backward() needs a Forward() first"));
}

// A Forward that failed half-way (here at the targets, after the whole forward pass ran) leaves
// nothing for Backward to use, even after an earlier good Forward.
TEST_F(BadBatch, BackwardAfterFailedForward) {
  model_.Forward(MakeBatch(), 8.0f);
  targets_[0] = 1000;
  EXPECT_TRUE(ForwardRejects(MakeBatch(), "target 1000 at position 0"));
  EXPECT_TRUE(ThrowsWith([&] { model_.Backward(); }, "Backward() needs a Forward() first"));
}

TEST_F(BadBatch, UnknownParameterName) {
  EXPECT_TRUE(ThrowsWith([&] { model_.Param("model.layers.2.mlp.up_proj.weight"); },
                         "the model has no parameter named 'model.layers.2.mlp.up_proj.weight'"));
}

// ---------------------------------------------------------------------------------------------
// Tensors, shapes, arenas.

TEST(BadLinear, MismatchedShapesNameTheTensor) {
  std::vector<float> buf(64);
  const Tensor x("x", DType::kF32, {4, 3}, buf.data());
  const Tensor w("w", DType::kF32, {5, 4}, buf.data());
  const Tensor w_ok("w", DType::kF32, {5, 3}, buf.data());
  const Tensor y("y", DType::kF32, {4, 6}, buf.data());
  const Tensor y_ok("y", DType::kF32, {4, 5}, buf.data());
  EXPECT_TRUE(ThrowsWith([&] { LinearForward(x, w, y_ok); },
                         "tensor 'w' has shape [5, 4], expected [5, 3]"));
  EXPECT_TRUE(ThrowsWith([&] { LinearForward(x, w_ok, y); },
                         "tensor 'y' has shape [4, 6], expected [4, 5]"));
  const Tensor flat("flat", DType::kF32, {12}, buf.data());
  EXPECT_TRUE(ThrowsWith([&] { LinearForward(flat, w_ok, y_ok); },
                         "LinearForward: 'flat' [12], 'w' [5, 3], 'y' [4, 5] must all be 2-D"));

  // Backward: dy (4, 5), w (5, 3) -> dx (4, 3); dw (5, 3) from dy and x (4, 3).
  const Tensor dy("dy", DType::kF32, {4, 5}, buf.data());
  const Tensor dx_bad("dx", DType::kF32, {4, 4}, buf.data());
  EXPECT_TRUE(ThrowsWith([&] { LinearBackwardInput(dy, w_ok, dx_bad, false); },
                         "tensor 'dx' has shape [4, 4], expected [4, 3]"));
  const Tensor x_bad("x", DType::kF32, {3, 3}, buf.data());
  const Tensor dw("dw", DType::kF32, {5, 3}, buf.data());
  EXPECT_TRUE(ThrowsWith([&] { LinearBackwardWeight(dy, x_bad, dw); },
                         "tensor 'x' has shape [3, 3], expected [4, 3]"));
  const Tensor dw_bad("dw", DType::kF32, {3, 5}, buf.data());
  EXPECT_TRUE(ThrowsWith([&] { LinearBackwardWeight(dy, x, dw_bad); },
                         "tensor 'dw' has shape [3, 5], expected [5, 3]"));
}

TEST(BadLinear, IntegerInputNamesTheTensor) {
  std::vector<float> buf(64);
  const Tensor x("ids", DType::kI32, {4, 3}, buf.data());
  const Tensor w("w", DType::kF32, {5, 3}, buf.data());
  const Tensor y("y", DType::kF32, {4, 5}, buf.data());
  EXPECT_TRUE(ThrowsWith([&] { LinearForward(x, w, y); }, "tensor 'ids' is i32, expected f32"));
}

TEST(BadTensor, CheckShapeWithDifferentRank) {
  float data[6];
  const Tensor t("flat", DType::kF32, {6}, data);
  EXPECT_TRUE(ThrowsWith(
      [&] {
        CheckShape(t, {2, 3});
      },
      "tensor 'flat' has shape [6], expected [2, 3]"));
  EXPECT_NO_THROW(CheckShape(t, {6}));
  EXPECT_TRUE(
      ThrowsWith([&] { CheckDType(t, DType::kBF16); }, "tensor 'flat' is f32, expected bf16"));
}

TEST(BadTensor, F32OfAnIntegerTensor) {
  int32_t ids[4] = {1, 2, 3, 4};
  const Tensor t("batch.tokens", DType::kI32, {4}, ids);
  EXPECT_TRUE(ThrowsWith([&] { t.f32(); }, "tensor 'batch.tokens' is i32, expected f32"));
  EXPECT_TRUE(ThrowsWith([&] { t.bf16(); }, "tensor 'batch.tokens' is i32, expected bf16"));
  EXPECT_EQ(t.i32()[3], 4);
}

TEST(BadTensor, RowsOutOfRange) {
  float data[6];
  const Tensor t("acts", DType::kF32, {3, 2}, data);
  EXPECT_TRUE(ThrowsWith([&] { t.Rows(1, 4); },
                         "rows [1, 4) out of range for tensor 'acts' of shape [3, 2]"));
  EXPECT_TRUE(ThrowsWith([&] { t.Rows(2, 1); }, "rows [2, 1) out of range"));
}

TEST(BadTensor, ShapeWithNegativeOrTooManyDimensions) {
  EXPECT_TRUE(ThrowsWith([] { Shape s{2, -1}; }, "negative dimension -1 in a shape"));
  EXPECT_TRUE(ThrowsWith(
      [] {
        Shape s{1, 2, 3, 4, 5};
      },
      "a shape has at most 4 dimensions, got 5"));
}

TEST(BadArena, FindOfAMissingName) {
  Arena arena("activations");
  arena.Add("xn1", DType::kF32, {2, 3});
  arena.Allocate();
  EXPECT_NO_THROW(arena.Find("xn1"));
  EXPECT_TRUE(
      ThrowsWith([&] { arena.Find("xn2"); }, "arena 'activations' has no tensor named 'xn2'"));
}

TEST(BadArena, AddAfterAllocateAndAllocateTwice) {
  Arena arena("params");
  arena.Add("w", DType::kF32, {2});
  arena.Allocate();
  EXPECT_TRUE(ThrowsWith([&] { arena.Add("v", DType::kF32, {2}); },
                         "arena 'params': Add('v') after Allocate()"));
  EXPECT_TRUE(ThrowsWith([&] { arena.Allocate(); }, "arena 'params' allocated twice"));
}

// ---------------------------------------------------------------------------------------------
// Attention.

class BadVarlenAttention : public ::testing::Test {
 protected:
  // heads 4, kv_heads 2, head_dim 8, T = 10.
  BadVarlenAttention()
      : buf_(4096), cu_data_{0, 4, 10}, cu_("cu_seqlens", DType::kI32, {3}, cu_data_) {}
  Tensor F32(const char* name, Shape s) { return Tensor(name, DType::kF32, s, buf_.data()); }
  std::vector<float> buf_;
  int32_t cu_data_[3];
  Tensor cu_;
  const AttentionDims dims_{4, 2, 8};
};

TEST_F(BadVarlenAttention, WrongKShape) {
  EXPECT_NO_THROW(VarlenAttentionForward(dims_, F32("q", {10, 32}), F32("k", {10, 16}),
                                         F32("v", {10, 16}), cu_, F32("out", {10, 32}),
                                         F32("lse", {4, 10})));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        VarlenAttentionForward(dims_, F32("q", {10, 32}), F32("k", {10, 32}), F32("v", {10, 16}),
                               cu_, F32("out", {10, 32}), F32("lse", {4, 10}));
      },
      "tensor 'k' has shape [10, 32], expected [10, 16]"));
}

TEST_F(BadVarlenAttention, WrongLseShapeAndFloatCuSeqlens) {
  EXPECT_TRUE(ThrowsWith(
      [&] {
        VarlenAttentionForward(dims_, F32("q", {10, 32}), F32("k", {10, 16}), F32("v", {10, 16}),
                               cu_, F32("out", {10, 32}), F32("lse", {10, 4}));
      },
      "tensor 'lse' has shape [10, 4], expected [4, 10]"));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        VarlenAttentionForward(dims_, F32("q", {10, 32}), F32("k", {10, 16}), F32("v", {10, 16}),
                               F32("cu_seqlens", {3}), F32("out", {10, 32}), F32("lse", {4, 10}));
      },
      "tensor 'cu_seqlens' is f32, expected i32"));
}

TEST_F(BadVarlenAttention, BackwardWithWrongDkShape) {
  EXPECT_TRUE(ThrowsWith(
      [&] {
        VarlenAttentionBackward(dims_, F32("q", {10, 32}), F32("k", {10, 16}), F32("v", {10, 16}),
                                cu_, F32("out", {10, 32}), F32("lse", {4, 10}),
                                F32("dout", {10, 32}), F32("dq", {10, 32}), F32("dk", {10, 32}),
                                F32("dv", {10, 16}));
      },
      "tensor 'dk' has shape [10, 32], expected [10, 16]"));
}

TEST_F(BadVarlenAttention, KvHeadsNotDividingHeads) {
  const AttentionDims dims{4, 3, 8};
  EXPECT_TRUE(ThrowsWith(
      [&] {
        VarlenAttentionForward(dims, F32("q", {10, 32}), F32("k", {10, 24}), F32("v", {10, 24}),
                               cu_, F32("out", {10, 32}), F32("lse", {4, 10}));
      },
      "kv_heads (3) must divide heads (4)"));
}

// ---------------------------------------------------------------------------------------------
// Optimizer.

class BadAdamW : public ::testing::Test {
 protected:
  BadAdamW() : w_(6, 1.0f), b_(3, 1.0f), g_(6, 0.1f) {
    params_ = {Tensor("w", DType::kF32, {2, 3}, w_.data()),
               Tensor("b", DType::kF32, {3}, b_.data())};
    grads_ = {Tensor("grad.w", DType::kF32, {2, 3}, g_.data()),
              Tensor("grad.b", DType::kF32, {3}, g_.data())};
  }
  std::vector<float> w_, b_, g_;
  std::vector<Tensor> params_, grads_;
};

TEST_F(BadAdamW, MismatchedGradientList) {
  AdamW opt(params_, AdamWConfig{});
  EXPECT_TRUE(ThrowsWith([&] { opt.Step(params_, {grads_[0]}, 1e-3f, 1.0f); },
                         "AdamW::Step got 2 params and 1 grads, expected 2"));
  EXPECT_EQ(opt.step(), 0) << "a rejected step must not advance the step count";
  EXPECT_EQ(w_[0], 1.0f) << "a rejected step must not touch the parameters";
}

TEST_F(BadAdamW, GradientShapeDiffersFromParameter) {
  AdamW opt(params_, AdamWConfig{});
  const std::vector<Tensor> swapped = {grads_[1], grads_[0]};
  EXPECT_TRUE(ThrowsWith([&] { opt.Step(params_, swapped, 1e-3f, 1.0f); },
                         "parameter 'w' [2, 3] or its gradient 'grad.b' [3] does not match the "
                         "optimizer state [2, 3]"));
  EXPECT_EQ(opt.step(), 0);
}

TEST_F(BadAdamW, IntegerParameter) {
  int32_t ids[3] = {0, 1, 2};
  EXPECT_TRUE(ThrowsWith([&] { AdamW opt({Tensor("ids", DType::kI32, {3}, ids)}, AdamWConfig{}); },
                         "tensor 'ids' is i32, expected f32"));
}

// Step checks dtypes before its parallel loop (an exception cannot leave an OpenMP region, so a
// check inside it would terminate the process), and a failed Step does not advance the step.
TEST_F(BadAdamW, NonFloatGradient) {
  AdamW opt(params_, AdamWConfig{});
  std::vector<uint16_t> bf(3);
  const std::vector<Tensor> grads = {grads_[0], Tensor("grad.b", DType::kBF16, {3}, bf.data())};
  EXPECT_TRUE(ThrowsWith([&] { opt.Step(params_, grads, 1e-3f, 1.0f); },
                         "tensor 'grad.b' is bf16, expected f32"));
  EXPECT_EQ(opt.step(), 0);
}

// Likewise checked before GlobalNorm's parallel loop.
TEST(BadGlobalNorm, NonFloatTensor) {
  std::vector<uint16_t> bf(4);
  float f[2] = {3, 4};
  const std::vector<Tensor> ts = {Tensor("grad.a", DType::kF32, {2}, f),
                                  Tensor("grad.b", DType::kBF16, {4}, bf.data())};
  EXPECT_TRUE(ThrowsWith([&] { GlobalNorm(ts); }, "tensor 'grad.b' is bf16, expected f32"));
}

TEST(BadClipScale, NonFiniteNormIsAnError) {
  EXPECT_TRUE(ThrowsWith([] { ClipScale(std::nan(""), 1.0f); }, "the gradient norm is nan"));
  EXPECT_TRUE(ThrowsWith([] { ClipScale(INFINITY, 1.0f); }, "the gradient norm is inf"));
}

TEST(BadAdamWConfig, ValidateNamesTheField) {
  AdamWConfig c;
  EXPECT_NO_THROW(c.Validate());
  c.beta1 = 1.0f;
  EXPECT_TRUE(ThrowsWith([&] { c.Validate(); }, "optimizer.beta1 must be in [0, 1), got 1"));
  c = AdamWConfig{};
  c.beta2 = -0.5f;
  EXPECT_TRUE(ThrowsWith([&] { c.Validate(); }, "optimizer.beta2 must be in [0, 1), got -0.5"));
  c = AdamWConfig{};
  c.eps = 0.0f;
  EXPECT_TRUE(ThrowsWith([&] { c.Validate(); }, "optimizer.eps must be > 0, got 0"));
  c = AdamWConfig{};
  c.weight_decay = -0.1f;
  EXPECT_TRUE(ThrowsWith([&] { c.Validate(); }, "optimizer.weight_decay must be >= 0, got -0.1"));
  // AdamW's constructor validates.
  c = AdamWConfig{};
  c.beta1 = std::numeric_limits<float>::quiet_NaN();
  float p[1] = {0};
  EXPECT_TRUE(ThrowsWith([&] { AdamW opt({Tensor("p", DType::kF32, {1}, p)}, c); },
                         "optimizer.beta1 must be in [0, 1)"));
}

TEST(BadLrSchedule, ValidateNamesTheField) {
  LrSchedule s;
  EXPECT_NO_THROW(s.Validate());
  s.max_lr = 0.0f;
  EXPECT_TRUE(ThrowsWith([&] { s.Validate(); }, "max_lr must be > 0, got 0"));
  s = LrSchedule{};
  s.min_lr = 1e-3f;  // above max_lr = 3e-4
  EXPECT_TRUE(ThrowsWith([&] { s.Validate(); }, "min_lr must be in [0, max_lr]"));
  s = LrSchedule{};
  s.min_lr = -1e-5f;
  EXPECT_TRUE(ThrowsWith([&] { s.Validate(); }, "min_lr must be in [0, max_lr]"));
  s = LrSchedule{};
  s.warmup_steps = -1;
  EXPECT_TRUE(ThrowsWith([&] { s.Validate(); }, "warmup_steps must be >= 0, got -1"));
  s = LrSchedule{};
  s.total_steps = 0;
  EXPECT_TRUE(ThrowsWith([&] { s.Validate(); }, "total_steps must be >= 1, got 0"));
  s = LrSchedule{};
  s.warmup_steps = 20;
  s.total_steps = 10;
  EXPECT_TRUE(ThrowsWith([&] { s.Validate(); }, "warmup_steps (20) exceeds total_steps (10)"));
}

TEST(BadThreads, ZeroThreads) {
  EXPECT_TRUE(
      ThrowsWith([] { ExecutionContext{0}.Validate(); }, "thread count must be at least 1, got 0"));
  EXPECT_TRUE(ThrowsWith([] { MakeBackend(Device::kCpu, ExecutionContext{0}); },
                         "thread count must be at least 1, got 0"));
}

}  // namespace
}  // namespace seqmesh
