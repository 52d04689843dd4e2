// The seams of the runtime (docs/SEAMS.md): the model acquires weights from its ParameterStore
// only around their use, sends checkpointed layers' inputs through its ActivationStore, AdamW
// updates through the OptimizerStateStore in sub-groups, and the thread count stays in the
// ExecutionContext. Each store here is a test double that would make a violation visible: it
// hands out its own copies and poisons them (NaN) outside the protocol's windows, so a model that
// read weights or saved inputs anywhere else would not reproduce the reference bit for bit.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "runtime/activation_store.h"
#include "runtime/backend.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "runtime/optimizer_state_store.h"
#include "runtime/parameter_store.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

ModelConfig TinyConfig(bool tied) {
  ModelConfig c;
  c.vocab = 37;
  c.hidden = 32;
  c.layers = 3;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 48;
  c.tie_embeddings = tied;
  return c;
}

// Three packed documents; layers 0 and 2 checkpointed.
struct TinyBatch {
  std::vector<int32_t> cu = {0, 19, 20, 45}, tokens, targets;
  explicit TinyBatch(int64_t vocab) {
    const int64_t t = cu.back();
    for (int64_t i = 0; i < t; ++i) tokens.push_back(static_cast<int32_t>((i * 7 + 3) % vocab));
    for (int64_t i = 0; i < t; ++i) targets.push_back(static_cast<int32_t>((i * 5 + 1) % vocab));
    for (size_t d = 1; d < cu.size(); ++d) targets[cu[d] - 1] = kIgnoreIndex;
  }
  Batch View() const {
    return Batch{tokens.data(), targets.data(), cu.data(), 3, cu.back(), nullptr};
  }
};

ModelOptions TinyOptions(std::vector<std::string>* log = nullptr) {
  ModelOptions o;
  o.max_tokens = 48;
  o.checkpoint_layers = {true, false, true};
  o.backend = MakeBackend(Device::kCpu, ExecutionContext{2});
  if (log) o.on_layer_grads_ready = [log](int64_t l) { log->push_back("G" + std::to_string(l)); };
  return o;
}

struct StepResult {
  float loss = 0;
  std::vector<float> logits;
  std::vector<std::vector<float>> grads;
};

StepResult ForwardBackward(Model& model, const TinyBatch& batch) {
  StepResult r;
  r.logits.resize(batch.cu.back() * model.config().vocab);
  model.ZeroGrad();
  r.loss = model.Forward(batch.View(), 40.0f, r.logits.data());
  model.Backward();
  for (const Tensor& g : model.grads()) r.grads.emplace_back(g.f32(), g.f32() + g.numel());
  return r;
}

void ExpectBitwiseEqual(const StepResult& a, const StepResult& b) {
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.logits, b.logits);
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) EXPECT_EQ(a.grads[i], b.grads[i]) << "grad " << i;
}

// Holds its own copy of another model's weights (the truth) and a staging buffer that is NaN
// except for the groups acquired and not yet released; logs A<g>, R<g>, P<g>.
class StagingParameterStore final : public ParameterStore {
 public:
  StagingParameterStore(const Model& truth, std::vector<std::string>* log) : log_(log) {
    const std::vector<Tensor>& p = truth.params();
    const char* base = static_cast<const char*>(p.front().data());
    const size_t bytes = static_cast<const char*>(p.back().data()) + p.back().bytes() - base;
    truth_.assign(bytes / sizeof(float), 0.0f);
    std::memcpy(truth_.data(), base, bytes);
    staging_.assign(truth_.size(), kNaN);
    for (const Tensor& t : p) {
      const size_t offset = (static_cast<const char*>(t.data()) - base) / sizeof(float);
      views_.emplace_back(t.name(), t.dtype(), t.shape(), staging_.data() + offset);
    }
    layout_ = truth.param_layout();
    held_.assign(layout_.groups.size(), false);
  }
  std::span<const Tensor> Acquire(int g) override {
    log_->push_back("A" + std::to_string(g));
    EXPECT_FALSE(held_[g]) << "group " << g << " acquired twice";
    held_[g] = true;
    const auto [begin, end] = Range(g);
    std::copy(truth_.begin() + begin, truth_.begin() + end, staging_.begin() + begin);
    const ParamLayout::Group& grp = layout_.groups[g];
    return std::span<const Tensor>(views_).subspan(grp.first, grp.last - grp.first);
  }
  void Release(int g) override {
    log_->push_back("R" + std::to_string(g));
    EXPECT_TRUE(held_[g]) << "group " << g << " released without an acquire";
    held_[g] = false;
    const auto [begin, end] = Range(g);
    std::fill(staging_.begin() + begin, staging_.begin() + end, kNaN);
  }
  void Prefetch(int g) override { log_->push_back("P" + std::to_string(g)); }

 private:
  std::pair<size_t, size_t> Range(int g) const {
    const ParamLayout::Group& grp = layout_.groups[g];
    const Tensor& first = views_[grp.first];
    const Tensor& last = views_[grp.last - 1];
    const float* base = staging_.data();
    return {static_cast<size_t>(first.f32() - base),
            static_cast<size_t>(last.f32() - base + last.numel())};
  }
  std::vector<std::string>* log_;
  std::vector<float> truth_, staging_;
  std::vector<Tensor> views_;
  ParamLayout layout_;
  std::vector<bool> held_;
};

// The protocol of runtime/parameter_store.h for L = 3 layers (groups 0 .. 4).
std::vector<std::string> ExpectedParameterEvents(bool tied) {
  std::vector<std::string> e = {"A0", "P1", "R0"};
  for (int g = 1; g <= 3; ++g)
    e.insert(e.end(),
             {"A" + std::to_string(g), "P" + std::to_string(g + 1), "R" + std::to_string(g)});
  auto head = [&] {
    e.push_back("A4");
    if (tied) e.push_back("A0");
  };
  auto release_head = [&] {
    if (tied) e.push_back("R0");
    e.push_back("R4");
  };
  head();
  release_head();
  head();
  e.push_back("P3");
  release_head();
  e.insert(e.end(), {"A3", "P2", "R3", "G2", "A2", "P1", "R2", "G1", "A1", "R1", "G0", "G-1"});
  return e;
}

class ParameterStoreTest : public ::testing::TestWithParam<bool> {};

// Model A (seed 1) computes through a store holding model B's weights (seed 2): it reproduces B's
// loss, logits and gradients bit for bit only if it used nothing but the acquired weights, each
// only between its Acquire and Release (outside, the store's buffer is NaN).
TEST_P(ParameterStoreTest, WeightsAreUsedOnlyBetweenAcquireAndRelease) {
  const ModelConfig c = TinyConfig(GetParam());
  const TinyBatch batch(c.vocab);
  std::vector<std::string> log;
  Model a(c, TinyOptions(&log)), b(c, TinyOptions());
  a.InitRandom(1, 0.2f);
  b.InitRandom(2, 0.2f);
  StagingParameterStore store(b, &log);
  a.UseParameterStore(&store);
  const StepResult got = ForwardBackward(a, batch);
  ExpectBitwiseEqual(got, ForwardBackward(b, batch));
  EXPECT_EQ(log, ExpectedParameterEvents(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Tied, ParameterStoreTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "tied" : "untied"; });

// Copies each saved input and poisons the model's buffer (NaN) at once; hands back its copy and
// poisons that at Release. Logs S<l>, P<l>, F<l>, R<l>.
class CopyingActivationStore final : public ActivationStore {
 public:
  CopyingActivationStore(int64_t layers, std::vector<std::string>* log)
      : copies_(layers), shapes_(layers), log_(log) {}
  void Save(int64_t l, const Tensor& input) override {
    log_->push_back("S" + std::to_string(l));
    copies_[l].assign(input.f32(), input.f32() + input.numel());
    shapes_[l] = input.shape();
    std::fill(input.f32(), input.f32() + input.numel(), kNaN);
  }
  void Prefetch(int64_t l) override { log_->push_back("P" + std::to_string(l)); }
  Tensor Fetch(int64_t l) override {
    log_->push_back("F" + std::to_string(l));
    return Tensor("saved" + std::to_string(l), DType::kF32, shapes_[l], copies_[l].data());
  }
  void Release(int64_t l) override {
    log_->push_back("R" + std::to_string(l));
    std::fill(copies_[l].begin(), copies_[l].end(), kNaN);
  }

 private:
  std::vector<std::vector<float>> copies_;
  std::vector<Shape> shapes_;
  std::vector<std::string>* log_;
};

// Saves in forward (in layer order), a prefetch ahead of each fetch, each fetch before its
// layer's gradients are ready and after the layer above finished; and the model computes
// backward from the fetched copy (its own buffer is NaN after Save).
TEST(ActivationStoreTest, SavedInForwardFetchedAheadOfTheMatchingBackward) {
  const ModelConfig c = TinyConfig(false);
  const TinyBatch batch(c.vocab);
  std::vector<std::string> log;
  Model a(c, TinyOptions(&log)), b(c, TinyOptions());
  a.InitRandom(3, 0.2f);
  b.InitRandom(3, 0.2f);
  CopyingActivationStore store(c.layers, &log);
  a.UseActivationStore(&store);
  const StepResult got = ForwardBackward(a, batch);
  ExpectBitwiseEqual(got, ForwardBackward(b, batch));
  EXPECT_EQ(log, (std::vector<std::string>{"S0", "S2", "P2", "F2", "P0", "R2", "G2", "G1", "F0",
                                           "R0", "G0", "G-1"}));
}

TEST(ActivationStoreTest, InMemoryStoreFetchBeforeSaveNamesTheLayer) {
  InMemoryActivationStore store(2);
  EXPECT_TRUE(
      testing::ThrowsWith([&] { store.Fetch(1); }, "activation store: layer 1 has no saved input"));
}

// Parameters whose sizes cross the 65,536-element chunks of AdamW and the sub-group edges.
struct AdamWFixture {
  std::vector<std::vector<float>> p, g;
  std::vector<Tensor> params, grads;
  AdamWFixture() {
    const std::vector<Shape> shapes = {Shape{300, 300}, Shape{5}, Shape{17, 1000}, Shape{70001}};
    for (size_t i = 0; i < shapes.size(); ++i) {
      p.push_back(testing::RandomVector(shapes[i].numel(), 40 + i));
      g.push_back(testing::RandomVector(shapes[i].numel(), 50 + i));
    }
    for (size_t i = 0; i < shapes.size(); ++i) {
      params.emplace_back("p" + std::to_string(i), DType::kF32, shapes[i], p[i].data());
      grads.emplace_back("grad.p" + std::to_string(i), DType::kF32, shapes[i], g[i].data());
    }
  }
};

// Records the sub-groups the in-memory store hands out.
class RecordingStateStore final : public OptimizerStateStore {
 public:
  RecordingStateStore(std::span<const Tensor> params, int64_t group_elems)
      : inner_(params, group_elems) {}
  int64_t sub_group_elems() const override { return inner_.sub_group_elems(); }
  void Visit(std::span<const Tensor> params, std::span<const Tensor> grads, StateAccess access,
             const Visitor& visit) override {
    size_t tensor = 0;  // where the next slice must start
    int64_t begin = 0;
    inner_.Visit(params, grads, access, [&](std::span<const OptimizerSlice> group) {
      int64_t n = 0;
      for (const OptimizerSlice& s : group) {
        while (tensor < params.size() && begin == params[tensor].numel()) ++tensor, begin = 0;
        EXPECT_EQ(s.tensor, tensor) << "slices cover the parameters in order";
        EXPECT_EQ(s.begin, begin) << "slices are consecutive";
        begin += s.count;
        n += s.count;
      }
      sizes.push_back(n);
      visit(group);
    });
  }
  InMemoryOptimizerStateStore& inner() { return inner_; }
  std::vector<int64_t> sizes;

 private:
  InMemoryOptimizerStateStore inner_;
};

TEST(OptimizerStateStoreTest, SubGroupsOfAnySizeGiveTheSameAdamWStepsBitwise) {
  AdamWFixture ref;
  const auto backend = MakeBackend(Device::kCpu, ExecutionContext{2});
  AdamW one(ref.params, AdamWConfig{}, {backend});
  for (int s = 0; s < 3; ++s) one.Step(ref.params, ref.grads, 1e-2f, 0.7f);
  int64_t total = 0;
  for (const Tensor& t : ref.params) total += t.numel();
  for (int64_t size : {int64_t{7}, int64_t{1000}, int64_t{65536}, int64_t{90001}, total}) {
    AdamWFixture f;
    RecordingStateStore store(f.params, size);
    AdamW sub(f.params, AdamWConfig{}, {backend, &store, size});
    for (int s = 0; s < 3; ++s) sub.Step(f.params, f.grads, 1e-2f, 0.7f);
    for (size_t i = 0; i < f.p.size(); ++i) {
      EXPECT_EQ(f.p[i], ref.p[i]) << "sub-groups of " << size << ", parameter " << i;
      for (const char* m : {"m.", "v."}) {
        const Tensor& got = store.inner().moments().Find(m + f.params[i].name());
        const Tensor& want = one.moments().Find(m + ref.params[i].name());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.bytes())) << m << i;
      }
    }
    ASSERT_EQ(store.sizes.size() % 3, 0u);
    const size_t per_step = store.sizes.size() / 3;
    EXPECT_EQ(per_step, static_cast<size_t>((total + size - 1) / size)) << size;
    for (size_t k = 0; k < per_step; ++k)
      EXPECT_EQ(store.sizes[k], std::min(size, total - static_cast<int64_t>(k) * size)) << size;
    EXPECT_TRUE(testing::ThrowsWith([&] { sub.moments(); }, "in an external store"));
  }
}

// The thread count lives in the context: running a model on 1 and 3 threads leaves OpenMP's
// setting of the calling thread, and of a thread started afterwards, as it was.
TEST(ExecutionContextTest, ComputeThreadsDoNotLeakIntoOtherThreads) {
  const int before = omp_get_max_threads();
  const ModelConfig c = TinyConfig(false);
  const TinyBatch batch(c.vocab);
  for (int threads : {1, 3}) {
    ModelOptions o = TinyOptions();
    o.backend = MakeBackend(Device::kCpu, ExecutionContext{threads});
    Model m(c, o);
    m.InitRandom(4, 0.2f);
    ForwardBackward(m, batch);
    EXPECT_EQ(m.backend().context().threads, threads);
    EXPECT_EQ(omp_get_max_threads(), before) << "after a model on " << threads << " threads";
  }
  int in_other = 0;
  std::thread([&] { in_other = omp_get_max_threads(); }).join();
  EXPECT_EQ(in_other, before);
}

TEST(BackendTest, EntryPointsNameTheTensorAndItsShape) {
  const auto backend = MakeBackend(Device::kCpu, {});
  std::vector<float> x(12), w(3), y(12), rstd(3);
  const Tensor xt("x", DType::kF32, {4, 3}, x.data()), wt("w", DType::kF32, {3}, w.data()),
      yt("y", DType::kF32, {4, 3}, y.data()), rt("rstd", DType::kF32, {3}, rstd.data());
  EXPECT_TRUE(testing::ThrowsWith([&] { backend->RmsNormForward(xt, wt, yt, rt, 1e-5f); },
                                  "tensor 'rstd' has shape [3], expected 4 rows of 1"));
  EXPECT_EQ(xt.device(), Device::kCpu);
  EXPECT_EQ(xt.Rows(1, 2).device(), Device::kCpu);
}

}  // namespace
}  // namespace seqmesh
