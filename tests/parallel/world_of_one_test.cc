// `seqmesh train` is a world of one on the one step path: HdpStep on WorldOfOne running the
// packed plan (scheduler/packed_plan.h) must give bitwise the losses, gradient norms, parameters
// and moments of the loop the trainer ran before it (PackMicroBatches, whole-model Forward and
// Backward per micro-batch with positions restarting per piece, GlobalNorm, AdamW with
// clipping), including sequences longer than the micro-batch that are cut into pieces. And a
// world of one cannot ring: such a plan fails naming why.
#include "parallel/world_of_one.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "parallel/hdp_step.h"
#include "runtime/batch_sampler.h"
#include "runtime/layers.h"
#include "runtime/optimizer.h"
#include "scheduler/packed_plan.h"
#include "scheduler/plan_validator.h"

namespace seqmesh {
namespace {

ModelConfig Config() {
  ModelConfig c;
  c.vocab = 50;
  c.hidden = 32;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 48;
  return c;
}

int32_t Token(int64_t seq, int64_t i) { return static_cast<int32_t>((seq * 7 + i * 3 + 1) % 50); }

constexpr int64_t kCapacity = 128;

// One rank's step on a world of one, as `seqmesh train` builds it.
struct OneRank {
  WorldOfOne comm;
  NoRingLink link;
  HdpStep hdp;
  // `state`: where the shard's AdamW state lives (null: memory, one sub-group).
  explicit OneRank(OptimizerStateFactory state = {})
      : hdp(Config(), HdpStepOptions{kCapacity, {}, nullptr, std::move(state)}, comm, link,
            AdamWConfig{}) {
    hdp.model().InitRandom(5, 0.1f);
  }
};

// The tokens of sequence `seq` are Token(seq, i).
void ReadTokens(uint64_t seq, int64_t begin, int64_t end, std::vector<int32_t>& out) {
  for (int64_t i = begin; i < end; ++i) out.push_back(Token(static_cast<int64_t>(seq), i));
}

// This rank's moments: all m, then all v, in piece order (a store may hand a piece out in
// several sub-pieces).
std::vector<float> Moments(const HdpStep& hdp) {
  std::vector<float> out, v_all;
  hdp.sync().ForEachMomentPiece([&](size_t, int64_t, const float* m, const float* v, int64_t n) {
    out.insert(out.end(), m, m + n);
    v_all.insert(v_all.end(), v, v + n);
  });
  out.insert(out.end(), v_all.begin(), v_all.end());
  return out;
}

// The trainer's loop before HdpStep (launch/trainer.cc at 80b19ae), on a global batch of lengths.
struct OldLoop {
  Model model{Config(), [] {
                ModelOptions o;
                o.max_tokens = kCapacity;
                return o;
              }()};
  AdamW adamw{model.params(), AdamWConfig{}};

  // `trained(seq, i)`: whether token i of sequence seq is a target (a loss mask); null: all.
  std::pair<double, double> Step(const std::vector<int32_t>& lengths, float lr,
                                 const std::function<bool(int64_t, int64_t)>& trained = nullptr) {
    std::vector<int64_t> ids;
    float normalizer = 0;
    for (size_t i = 0; i < lengths.size(); ++i) {
      ids.push_back(static_cast<int64_t>(i));
      for (int32_t k = 1; k < lengths[i]; ++k) normalizer += !trained || trained(i, k);
    }
    const PackResult packed = PackMicroBatches(ids, lengths, kCapacity);
    model.ZeroGrad();
    double loss = 0;
    for (const MicroBatchPlan& mb : packed.micro_batches) {
      std::vector<int32_t> tokens, targets;
      for (const PackedPiece& p : mb.pieces)
        for (int64_t i = p.begin; i < p.begin + p.length; ++i) {
          tokens.push_back(Token(p.id, i));
          const bool counts = i + 1 < lengths[p.id] && (!trained || trained(p.id, i + 1));
          targets.push_back(counts ? Token(p.id, i + 1) : kIgnoreIndex);
        }
      Batch b{tokens.data(), targets.data(), mb.cu_seqlens.data(),
              static_cast<int64_t>(mb.pieces.size()), mb.tokens()};
      loss += model.Forward(b, normalizer);
      model.Backward();
    }
    const double norm = GlobalNorm(model.grads());
    adamw.Step(model.params(), model.grads(), lr, ClipScale(norm, 1.0f));
    return {loss, norm};
  }
};

TEST(WorldOfOne, HdpStepOnThePackedPlanEqualsTheTrainersOldLoopBitwise) {
  OldLoop old;
  old.model.InitRandom(5, 0.1f);
  OneRank rank;
  HdpStep& hdp = rank.hdp;
  const scheduler::CostModel cost;
  int64_t cut = 0;
  for (int step = 0; step < 4; ++step) {
    // 12 sequences of 1..300 tokens: several longer than the capacity (cut into pieces).
    std::vector<int32_t> lengths;
    std::vector<int64_t> lengths64;
    uint64_t targets = 0;
    for (int i = 0; i < 12; ++i) {
      lengths.push_back(1 + (step * 131 + i * 97) % 300);
      lengths64.push_back(lengths.back());
      targets += lengths.back() - 1;
    }
    const scheduler::PackedPlan packed =
        scheduler::PlanPacked(cost, lengths64, kCapacity, 1, static_cast<uint64_t>(step));
    EXPECT_TRUE(scheduler::ValidateStepPlan(packed.plan).empty());
    cut += packed.cut_sequences;
    const TokenReader read = ReadTokens;
    const float lr = 1e-3f * static_cast<float>(step + 1);
    const auto [loss, norm] = old.Step(lengths, lr);
    const HdpStepResult r = hdp.Run(packed.plan, targets, read, lr, 1.0f);
    EXPECT_EQ(r.run.loss, loss) << "step " << step;
    EXPECT_EQ(r.grad_norm, norm) << "step " << step;
  }
  EXPECT_GT(cut, 0) << "the test must cut sequences";
  for (size_t i = 0; i < old.model.params().size(); ++i) {
    const Tensor& a = old.model.params()[i];
    EXPECT_EQ(0, std::memcmp(a.data(), hdp.model().params()[i].data(), a.bytes())) << a.name();
  }
  std::vector<std::vector<float>> m(old.model.params().size()), v(m.size());
  hdp.sync().ForEachMomentPiece(
      [&](size_t t, int64_t offset, const float* pm, const float* pv, int64_t len) {
        m[t].resize(offset + len);
        v[t].resize(offset + len);
        std::memcpy(m[t].data() + offset, pm, len * sizeof(float));
        std::memcpy(v[t].data() + offset, pv, len * sizeof(float));
      });
  const auto& moments = old.adamw.moments().tensors();  // m.<p> and v.<p>, per parameter
  for (size_t t = 0; t < m.size(); ++t) {
    ASSERT_EQ(static_cast<int64_t>(m[t].size()), moments[2 * t].numel());
    EXPECT_EQ(0, std::memcmp(m[t].data(), moments[2 * t].data(), moments[2 * t].bytes()));
    EXPECT_EQ(0, std::memcmp(v[t].data(), moments[2 * t + 1].data(), moments[2 * t + 1].bytes()));
  }
}

// Issue 18, item 3: with a loss mask (chat data), only the marked tokens are targets and the
// normalizer counts only them: the step equals, bitwise, the old loop with the masked targets set
// to the ignore index by hand, cut sequences included; and it is not the unmasked step.
TEST(WorldOfOne, ALossMaskTrainsOnlyTheMarkedTargets) {
  auto trained = [](int64_t seq, int64_t i) { return (seq * 5 + i) % 3 != 0 && i % 40 > 9; };
  OldLoop old;
  old.model.InitRandom(5, 0.1f);
  OneRank rank, unmasked;
  const TokenReader read(ReadTokens,
                         [&](uint64_t seq, int64_t begin, int64_t end, std::vector<uint8_t>& out) {
                           for (int64_t i = begin; i < end; ++i)
                             out.push_back(trained(static_cast<int64_t>(seq), i));
                         });
  for (int step = 0; step < 3; ++step) {
    std::vector<int32_t> lengths;
    std::vector<int64_t> lengths64;
    uint64_t targets = 0, all = 0;
    for (int i = 0; i < 10; ++i) {
      lengths.push_back(2 + (step * 131 + i * 97) % 290);
      lengths64.push_back(lengths.back());
      for (int32_t k = 1; k < lengths.back(); ++k) targets += trained(i, k);
      all += lengths.back() - 1;
    }
    ASSERT_LT(targets, all * 3 / 4) << "the mask must leave out many targets";
    const scheduler::PackedPlan packed =
        scheduler::PlanPacked(scheduler::CostModel{}, lengths64, kCapacity, 1, step);
    ASSERT_GT(packed.cut_sequences, 0);
    const auto [loss, norm] = old.Step(lengths, 1e-3f, trained);
    const HdpStepResult r = rank.hdp.Run(packed.plan, targets, read, 1e-3f, 1.0f);
    EXPECT_EQ(r.run.loss, loss) << "step " << step;
    EXPECT_EQ(r.grad_norm, norm) << "step " << step;
    const HdpStepResult u = unmasked.hdp.Run(packed.plan, all, ReadTokens, 1e-3f, 1.0f);
    EXPECT_NE(u.run.loss, r.run.loss);
  }
  for (size_t i = 0; i < old.model.params().size(); ++i) {
    const Tensor& a = old.model.params()[i];
    EXPECT_EQ(0, std::memcmp(a.data(), rank.hdp.model().params()[i].data(), a.bytes())) << a.name();
  }
}

// Issue 13, item 6: a step whose gradient norm is not finite never updates: the parameters,
// the moments and the optimizer's step count stay bit for bit, and the norm says so.
TEST(WorldOfOne, ANonFiniteGradientNormSkipsTheUpdate) {
  OneRank rank;
  HdpStep& hdp = rank.hdp;
  const std::vector<int64_t> lengths = {90, 40};
  const scheduler::PackedPlan packed =
      scheduler::PlanPacked(scheduler::CostModel{}, lengths, kCapacity, 1, 0);
  const TokenReader read = ReadTokens;
  EXPECT_TRUE(std::isfinite(hdp.Run(packed.plan, 128, read, 1e-3f, 1.0f).grad_norm));
  std::vector<std::vector<float>> before;
  for (const Tensor& p : hdp.model().params()) before.emplace_back(p.f32(), p.f32() + p.numel());
  const std::vector<float> moments_before = Moments(hdp);
  hdp.Execute(packed.plan, 128, read);
  hdp.model().grads()[3].f32()[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(hdp.Update(1e-3f, 1.0f)));
  EXPECT_EQ(hdp.sync().step(), 1);
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_EQ(0, std::memcmp(before[i].data(), hdp.model().params()[i].f32(),
                             before[i].size() * sizeof(float)))
        << hdp.model().params()[i].name();
  const std::vector<float> moments_after = Moments(hdp);
  EXPECT_EQ(0, std::memcmp(moments_before.data(), moments_after.data(),
                           moments_before.size() * sizeof(float)));
  // The next finite step updates as usual.
  EXPECT_TRUE(std::isfinite(hdp.Run(packed.plan, 128, read, 1e-3f, 1.0f).grad_norm));
  EXPECT_EQ(hdp.sync().step(), 2);
}

// GradSync's ZeRO-1 update goes through the OptimizerStateStore (issue 12, item 5): visited in
// sub-groups of any size, the parameters and moments are bitwise those of one group.
TEST(WorldOfOne, TheShardUpdateIsTheSameForEverySubGroupSize) {
  auto run = [](int64_t group) {
    auto rank = std::make_unique<OneRank>([group](std::span<const Tensor> params) {
      return std::make_unique<InMemoryOptimizerStateStore>(params, group);
    });
    HdpStep* hdp = &rank->hdp;
    const scheduler::PackedPlan packed =
        scheduler::PlanPacked(scheduler::CostModel{}, {90, 140, 20}, kCapacity, 1, 0);
    const TokenReader read = ReadTokens;
    for (int k = 0; k < 3; ++k) hdp->Run(packed.plan, 247, read, 1e-3f, 1.0f);
    std::vector<float> state;
    for (const Tensor& p : hdp->model().params())
      state.insert(state.end(), p.f32(), p.f32() + p.numel());
    const std::vector<float> moments = Moments(*hdp);
    state.insert(state.end(), moments.begin(), moments.end());
    return state;
  };
  const std::vector<float> one = run(0);
  for (int64_t group : {7, 1000, 65536}) {
    const std::vector<float> other = run(group);
    ASSERT_EQ(other.size(), one.size());
    EXPECT_EQ(0, std::memcmp(other.data(), one.data(), one.size() * sizeof(float)))
        << "sub-groups of " << group;
  }
}

TEST(WorldOfOne, APlanThatRingsASequenceFailsNamingWhy) {
  NoRingLink link;
  const float block[4] = {};
  float recv[4];
  try {
    link.Post(0, block, 4, 1, recv, 4, 1);
    ADD_FAILURE() << "a world of one posted a ring exchange";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a world of one rank cannot ring a sequence"),
              std::string::npos)
        << e.what();
  }
  WorldOfOne comm;
  float x[3] = {1, 2, 3}, y[3] = {};
  comm.ReduceScatter(x, y, 3, DType::kF32);
  EXPECT_EQ(std::vector<float>(y, y + 3), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(comm.AllReduceScalar(2.5), 2.5);
}

}  // namespace
}  // namespace seqmesh
