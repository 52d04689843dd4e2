// Activation offload (issue 15, item 2): the saved inputs of checkpointed layers go to pinned
// host memory or to SSD and come back bitwise. Oracles: the model with every layer's activations
// kept (no checkpointing), and checkpointing in memory; losses and every gradient must be equal
// bit for bit over several micro-batches of different lengths, with forward-only passes between
// them, at every prefetch depth and with layers mixing offload, recompute and keep.
#include "offload/activation_offload.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "runtime/model.h"
#include "tests/offload/offload_test_util.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using P = ActivationPlace;

ModelConfig Small() {
  ModelConfig c;
  c.vocab = 61;
  c.hidden = 32;
  c.layers = 5;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 64;
  return c;
}

// The micro-batches: documents of ids below the vocabulary.
struct Docs : testing::Docs {
  Docs(int64_t t, int docs, int salt) : testing::Docs(t, docs, salt, 61) {}
};

constexpr int64_t kMaxTokens = 96;

Model Make(const std::vector<P>& places) {
  ModelOptions o;
  o.max_tokens = kMaxTokens;
  for (P p : places) {
    o.checkpoint_layers.push_back(p != P::kNone);
    o.offload_layers.push_back(p == P::kOffload);
  }
  Model m(Small(), o);
  m.InitRandom(5, 0.2f);
  return m;
}

struct Trace {
  std::vector<float> losses, evals;
  std::vector<std::vector<float>> grads;  // after each micro-batch
};

// Three micro-batches (96, 40 and 77 tokens), each: Forward, Backward; a forward-only pass
// (validation) between the second and the third. `counts`: a pass-pool model's offloaded layers
// of the four passes in order (Batch::offloaded_layers); empty: 0.
Trace Train(Model& m, const std::vector<int64_t>& counts = {}) {
  Trace r;
  const Docs a(96, 3, 1), b(40, 1, 2), c(77, 4, 3), v(64, 2, 4);
  size_t pass = 0;
  auto view = [&](const Docs& d) {
    Batch batch = d.View();
    if (!counts.empty()) batch.offloaded_layers = counts[pass];
    ++pass;
    return batch;
  };
  m.ZeroGrad();
  for (const Docs* d : {&a, &b, &c}) {
    if (d == &c) r.evals.push_back(m.Forward(view(v), 60.0f));
    r.losses.push_back(m.Forward(view(*d), static_cast<float>(d->tokens.size())));
    m.Backward();
    std::vector<float> all;
    for (const Tensor& g : m.grads()) all.insert(all.end(), g.f32(), g.f32() + g.numel());
    r.grads.push_back(all);
  }
  return r;
}

void ExpectBitwise(const Trace& got, const Trace& want, const std::string& what) {
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t i = 0; i < want.losses.size(); ++i) {
    EXPECT_EQ(std::memcmp(&got.losses[i], &want.losses[i], sizeof(float)), 0)
        << what << ": loss " << i << " " << got.losses[i] << " vs " << want.losses[i];
    ASSERT_EQ(got.grads[i].size(), want.grads[i].size());
    EXPECT_EQ(std::memcmp(got.grads[i].data(), want.grads[i].data(),
                          want.grads[i].size() * sizeof(float)),
              0)
        << what << ": gradients after micro-batch " << i;
  }
  EXPECT_EQ(got.evals, want.evals) << what << ": forward-only loss";
}

ActivationOffloadOptions Options(ActivationTarget target, const std::vector<P>& places,
                                 const std::string& dir, int depth) {
  ActivationOffloadOptions o;
  o.target = target;
  o.layers = places;
  o.max_tokens = kMaxTokens;
  o.hidden = Small().hidden;
  o.prefetch_depth = depth;
  o.ssd.dir = dir;
  o.ssd.block_bytes = 4096;  // several blocks per layer's input
  return o;
}

Trace Reference() {
  Model keep = Make(std::vector<P>(5, P::kNone));
  return Train(keep);
}

TEST(ActivationOffload, CheckpointingInMemoryIsTheKeptModelBitwise) {
  const Trace want = Reference();
  Model m = Make(std::vector<P>(5, P::kRecompute));
  ExpectBitwise(Train(m), want, "checkpointing in memory");
}

TEST(ActivationOffload, HostAndSsdAreBitwiseAtEveryPrefetchDepth) {
  const Trace want = Reference();
  testing::ScratchDir dir;
  const std::vector<std::vector<P>> mixes = {
      std::vector<P>(5, P::kOffload),
      {P::kOffload, P::kRecompute, P::kOffload, P::kNone, P::kOffload},
      {P::kNone, P::kOffload, P::kOffload, P::kRecompute, P::kNone}};
  for (ActivationTarget target : {ActivationTarget::kHost, ActivationTarget::kSsd}) {
    for (const std::vector<P>& places : mixes) {
      for (int depth : {0, 1, 2, 8}) {
        if (target == ActivationTarget::kHost && depth > 0) continue;  // no reads to prefetch
        OffloadedActivationStore store(Options(target, places, dir.path(), depth));
        Model m = Make(places);
        m.UseActivationStore(&store);
        const std::string what = std::string(target == ActivationTarget::kHost ? "host" : "ssd") +
                                 ", depth " + std::to_string(depth) + ", layer 0 " +
                                 (places[0] == P::kOffload ? "offloaded" : "kept");
        ExpectBitwise(Train(m), want, what);
        const ActivationOffloadStats s = store.TakeStats();
        int64_t offloaded = 0;
        for (P p : places) offloaded += p == P::kOffload;
        // 4 forwards save, 3 backwards fetch: 96 + 40 + 64 + 77 tokens out, 96 + 40 + 77 in.
        EXPECT_EQ(s.saves, 4 * offloaded) << what;
        EXPECT_EQ(s.fetches, 3 * offloaded) << what;
        EXPECT_EQ(s.bytes_out, offloaded * (96 + 40 + 64 + 77) * 32 * 4) << what;
        EXPECT_EQ(s.bytes_in, offloaded * (96 + 40 + 77) * 32 * 4) << what;
      }
    }
  }
  EXPECT_TRUE(dir.Entries().empty()) << "the SSD store left a file behind";
}

// distributed.offload: a model with a pass pool lays its layers out per pass from the plan's
// offload count (the lowest k layers offloaded, the rest kept), through one store made for the
// most a pass can offload (every layer but the last). Each count, mixed within a step, is the
// kept model bit for bit.
TEST(ActivationOffload, APassPoolModelIsTheKeptModelBitwiseAtEveryCount) {
  const Trace want = Reference();
  size_t pool = 0;
  for (int64_t k = 0; k < 5; ++k)
    pool = std::max(pool, Model::PassActivationBytes(Small(), kMaxTokens, k, Precision::kF32));
  testing::ScratchDir dir;
  for (const std::vector<int64_t>& counts :
       std::vector<std::vector<int64_t>>{{0, 0, 0, 0}, {4, 4, 4, 4}, {2, 0, 3, 4}, {3, 4, 0, 2}}) {
    ModelOptions o;
    o.max_tokens = kMaxTokens;
    o.pass_pool_bytes = pool;
    Model m(Small(), o);
    m.InitRandom(5, 0.2f);
    std::vector<P> places(5, P::kOffload);
    places[4] = P::kNone;
    OffloadedActivationStore store(Options(ActivationTarget::kSsd, places, dir.path(), 1));
    m.UseActivationStore(&store);
    const Trace got = Train(m, counts);
    std::string what = "counts";
    for (int64_t k : counts) what += " " + std::to_string(k);
    ExpectBitwise(got, want, what);
    int64_t saved = 0;
    for (int64_t k : counts) saved += k;
    EXPECT_EQ(store.TakeStats().saves, static_cast<uint64_t>(saved)) << what;
  }
  EXPECT_TRUE(dir.Entries().empty()) << "the SSD store left a file behind";
}

// bf16 (training.precision): the saved GEMM inputs are bf16 in the carve too; still the kept
// bf16 model bit for bit.
TEST(ActivationOffload, ABf16PassPoolModelIsTheKeptBf16ModelBitwise) {
  auto make = [](size_t pool) {
    ModelOptions o;
    o.max_tokens = kMaxTokens;
    o.precision = Precision::kBf16;
    o.pass_pool_bytes = pool;
    Model m(Small(), o);
    m.InitRandom(5, 0.2f);
    return m;
  };
  size_t pool = 0;
  for (int64_t k = 0; k < 5; ++k)
    pool = std::max(pool, Model::PassActivationBytes(Small(), kMaxTokens, k, Precision::kBf16));
  // The GEMM inputs at 2 bytes: every carve is smaller than fp32's.
  EXPECT_LT(pool, Model::PassActivationBytes(Small(), kMaxTokens, 0, Precision::kF32));
  Model kept = make(0);
  const Trace want = Train(kept);
  testing::ScratchDir dir;
  std::vector<P> places(5, P::kOffload);
  places[4] = P::kNone;
  OffloadedActivationStore store(Options(ActivationTarget::kSsd, places, dir.path(), 2));
  Model m = make(pool);
  m.UseActivationStore(&store);
  const Trace got = Train(m, {4, 2, 0, 3});
  ExpectBitwise(got, want, "bf16 pass pool");
}

TEST(ActivationOffload, APassPoolNamesAPassThatDoesNotFit) {
  ModelOptions o;
  o.max_tokens = kMaxTokens;
  // Room for 4 offloaded layers at 96 tokens, not for keeping every layer.
  o.pass_pool_bytes = Model::PassActivationBytes(Small(), kMaxTokens, 4, Precision::kF32);
  ASSERT_LT(o.pass_pool_bytes, Model::PassActivationBytes(Small(), kMaxTokens, 0, Precision::kF32));
  Model m(Small(), o);
  const Docs a(96, 3, 1);
  EXPECT_TRUE(
      testing::ThrowsWith([&] { m.Forward(a.View(), 96.0f); }, "with 0 layers offloaded needs"));
  Batch offloaded = a.View();
  offloaded.offloaded_layers = 4;
  EXPECT_TRUE(
      testing::ThrowsWith([&] { m.Forward(offloaded, 96.0f); }, "no offloading ActivationStore"));
  ModelOptions fixed;
  fixed.max_tokens = kMaxTokens;
  Model f(Small(), fixed);
  EXPECT_TRUE(
      testing::ThrowsWith([&] { f.Forward(offloaded, 96.0f); }, "build it with a pass pool"));
}

// Eq. 3's ratio r of layers 2..l-1 as offloaded layers: r (l - 2) + 1, so that the resident
// layers l - k + 1 (kept ones and the recompute set) are 2 + (1 - r)(l - 2).
TEST(ActivationOffload, RatiosMapToOffloadedLayerCounts) {
  EXPECT_EQ(Model::OffloadedLayersFor(0, 32), 0);
  EXPECT_EQ(Model::OffloadedLayersFor(1, 32), 31);
  EXPECT_EQ(Model::OffloadedLayersFor(0.5, 32), 16);
  EXPECT_EQ(Model::OffloadedLayersFor(1.0 / 30, 32), 2);
  EXPECT_EQ(Model::OffloadedLayersFor(0.5, 2), 0);  // two layers: nothing to offload
  for (int64_t l : {3, 4, 8, 32})
    for (int64_t j = 1; j <= l - 2; ++j) {
      const double r = static_cast<double>(j) / static_cast<double>(l - 2);
      const int64_t k = Model::OffloadedLayersFor(r, l);
      EXPECT_DOUBLE_EQ(static_cast<double>(l - k + 1), 2 + (1 - r) * (l - 2)) << l << " " << j;
    }
  EXPECT_TRUE(
      testing::ThrowsWith([&] { Model::OffloadedLayersFor(0.3, 4); }, "not a multiple of 1/2"));
}

TEST(ActivationOffload, OffloadingSharesTheResidualSlots) {
  Model recompute = Make(std::vector<P>(5, P::kRecompute));
  Model offload = Make(std::vector<P>(5, P::kOffload));
  // Five layer-input slots of kMaxTokens x hidden f32 become two.
  EXPECT_EQ(recompute.activation_bytes() - offload.activation_bytes(), 3 * kMaxTokens * 32 * 4);
}

TEST(ActivationOffload, RefusesAModelWithoutACopyingStore) {
  Model m = Make(std::vector<P>(5, P::kOffload));
  const Docs a(96, 3, 1);
  EXPECT_TRUE(testing::ThrowsWith([&] { m.Forward(a.View(), 96.0f); },
                                  "has no offloading ActivationStore"));
  ModelOptions o;
  o.max_tokens = 8;
  o.checkpoint_layers.assign(5, false);
  o.offload_layers.assign(5, true);
  EXPECT_TRUE(testing::ThrowsWith([&] { Model bad(Small(), o); }, "is not checkpointed"));
}

TEST(ActivationOffload, FetchOutOfOrderAndUnsavedLayersAreNamed) {
  testing::ScratchDir dir;
  const std::vector<P> places(3, P::kOffload);
  OffloadedActivationStore store(Options(ActivationTarget::kSsd, places, dir.path(), 0));
  std::vector<float> x(kMaxTokens * 32, 1.5f);
  const Tensor t("x", DType::kF32, {10, 32}, x.data());
  EXPECT_TRUE(testing::ThrowsWith([&] { store.Fetch(1); }, "has no saved input"));
  for (int l = 0; l < 3; ++l) store.Save(l, t);
  store.Prefetch(2);
  EXPECT_TRUE(testing::ThrowsWith([&] { store.Fetch(0); }, "out of backward's order"));
  const Tensor back = store.Fetch(2);
  ASSERT_EQ(back.dim(0), 10);
  EXPECT_EQ(std::memcmp(back.data(), x.data(), 10 * 32 * sizeof(float)), 0);
  EXPECT_TRUE(testing::ThrowsWith([&] { store.Save(7, t); }, "the model has 3 layers"));
  EXPECT_TRUE(testing::ThrowsWith(
      [&] {
        OffloadedActivationStore none(
            Options(ActivationTarget::kSsd, {P::kNone, P::kOffload}, dir.path(), 0));
        none.Save(0, t);
      },
      "which is not checkpointed"));
}

// The model's own arena is the oracle for the sizes the policy plans with.
TEST(ActivationPolicy, LayerBytesAreWhatTheModelAllocates) {
  for (Precision precision : {Precision::kF32, Precision::kBf16}) {
    auto bytes = [&](P place) {
      ModelOptions o;
      o.max_tokens = kMaxTokens;
      o.precision = precision;
      o.checkpoint_layers.assign(5, place != P::kNone);
      o.offload_layers.assign(5, place == P::kOffload);
      return Model(Small(), o).activation_bytes();
    };
    // Five kept sets against one shared recompute set; five input slots against two shared.
    EXPECT_EQ(bytes(P::kNone) - bytes(P::kRecompute),
              4 * Model::LayerActivationBytes(Small(), kMaxTokens, precision));
    EXPECT_EQ(bytes(P::kRecompute) - bytes(P::kOffload),
              3 * Model::ResidualSlotBytes(Small(), kMaxTokens));
  }
  EXPECT_LT(Model::LayerActivationBytes(Small(), kMaxTokens, Precision::kBf16),
            Model::LayerActivationBytes(Small(), kMaxTokens, Precision::kF32));
}

// Crafted numbers: f = 1 ms, b = 2 ms; an input of 3e6 bytes at 1 GB/s takes 3 ms each way, so
// an offloaded layer costs its recompute (1) + the write forward's next layer does not hide
// (3 - 1) + nothing for the read (hidden under b + f = 3): 3 ms.
ActivationPolicyInput Crafted() {
  ActivationPolicyInput in;
  in.layers = 4;
  in.forward_ms = 1;
  in.backward_ms = 2;
  in.layer_bytes = 10e6;
  in.input_bytes = 3e6;
  in.offload = true;
  in.target = ActivationTarget::kSsd;
  in.write_gbps = in.read_gbps = 1;
  in.write_buffers = 2;
  in.prefetch_depth = 2;
  in.budget_bytes = 1e12;
  return in;
}

TEST(ActivationPolicy, CostsOneChoiceExactly) {
  const ActivationPolicy p = CostActivationPlaces(Crafted(), /*kept=*/1, /*offloaded=*/2);
  EXPECT_EQ(p.places, (std::vector<P>{P::kOffload, P::kOffload, P::kRecompute, P::kNone}));
  EXPECT_EQ(p.recomputed, 1);
  // kept 13e6, a saved input 3e6, the recompute set 10e6, two shared slots 6e6, staging
  // (2 writes + 2 reads: no more than the 2 offloaded layers) 12e6.
  EXPECT_DOUBLE_EQ(p.bytes, 44e6);
  EXPECT_DOUBLE_EQ(p.extra_ms, 1 + 2 * 3);
  // Every layer kept: no extra time, no recompute set.
  const ActivationPolicy kept = CostActivationPlaces(Crafted(), 4, 0);
  EXPECT_DOUBLE_EQ(kept.bytes, 52e6);
  EXPECT_DOUBLE_EQ(kept.extra_ms, 0);
  EXPECT_TRUE(testing::ThrowsWith([] { CostActivationPlaces(Crafted(), 3, 2); },
                                  "3 kept and 2 offloaded of 4 layers"));
}

TEST(ActivationPolicy, ChoosesTheFastestPlanThatFits) {
  ActivationPolicyInput in = Crafted();
  EXPECT_EQ(ChooseActivationPlaces(in).kept, 4);  // room for everything: keep everything
  // Room for 2 kept + 2 recomputed (26e6 + 6e6 + 10e6 = 42e6): recompute is cheaper than offload
  // (1 ms against 3 ms), and every plan with a third kept layer takes more than 42e6.
  in.budget_bytes = 42e6;
  ActivationPolicy p = ChooseActivationPlaces(in);
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.places, (std::vector<P>{P::kRecompute, P::kRecompute, P::kNone, P::kNone}));
  EXPECT_DOUBLE_EQ(p.extra_ms, 2);
  // Below every plan: all recomputed takes 4 x 3e6 + 10e6 = 22e6; offloading frees an input per
  // layer but pays the shared slots and the staging first (4 offloaded: 10 + 6 + 5 x 3 = 31e6).
  // Nothing fits, and the smallest plan comes back marked.
  in.budget_bytes = 21e6;
  p = ChooseActivationPlaces(in);
  EXPECT_FALSE(p.fits);
  EXPECT_DOUBLE_EQ(p.bytes, 22e6);  // all recomputed: the smallest here
  // Many layers: offload wins memory. 12 layers all recomputed take 36e6 + 10e6 = 46e6; o >= 3
  // offloaded and the rest recomputed take 3e6 (12 - o) + 10e6 + 6e6 + 15e6 = 67e6 - 3e6 o, so
  // a budget of 40e6 needs o = 9, and no more (each costs 3 ms against recompute's 1); a kept
  // layer would need o > 12.
  in.layers = 12;
  in.budget_bytes = 40e6;
  p = ChooseActivationPlaces(in);
  ASSERT_TRUE(p.fits);
  EXPECT_EQ(p.offloaded, 9);
  EXPECT_EQ(p.kept, 0);
  EXPECT_DOUBLE_EQ(p.bytes, 40e6);
  EXPECT_DOUBLE_EQ(p.extra_ms, 9 * 3 + 3 * 1);
  for (int l = 0; l < 12; ++l) EXPECT_EQ(p.places[l], l < 9 ? P::kOffload : P::kRecompute) << l;
  // Transfers fast enough to hide: an offloaded layer costs what a recomputed one does, and
  // among the plans of equal time the one with the fewest offloaded layers wins (still 9: the
  // budget needs them), then the fewest bytes.
  in.write_gbps = in.read_gbps = 1000;
  p = ChooseActivationPlaces(in);
  EXPECT_DOUBLE_EQ(p.extra_ms, 12);
  EXPECT_EQ(p.offloaded, 9);
  EXPECT_DOUBLE_EQ(p.bytes, 40e6);
  in.budget_bytes = 31e6;  // all 12 offloaded: the one plan that fits
  EXPECT_EQ(ChooseActivationPlaces(in).offloaded, 12);
}

TEST(ActivationPolicy, NeverOffloadsToHostMemoryOnTheCpu) {
  // A pinned host copy per layer takes what the input slot took, plus the shared slots: on the
  // CPU backend it frees nothing, however fast the copy.
  ActivationPolicyInput in = Crafted();
  in.layers = 12;
  in.target = ActivationTarget::kHost;
  in.write_gbps = in.read_gbps = 1000;
  for (double budget : {1e12, 60e6, 46e6}) {
    in.budget_bytes = budget;
    const ActivationPolicy p = ChooseActivationPlaces(in);
    EXPECT_TRUE(p.fits) << budget;
    EXPECT_EQ(p.offloaded, 0) << budget;
  }
  in.offload = true;
  in.write_gbps = 0;
  EXPECT_TRUE(testing::ThrowsWith([&] { ChooseActivationPlaces(in); },
                                  "needs the target's write and read bandwidths"));
}

}  // namespace
}  // namespace seqmesh
