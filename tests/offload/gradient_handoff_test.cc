// A world of one with its optimizer on SSD hands each bucket's gradients to the store as its
// backward finishes and gives their memory back (parallel/grad_sync.h, offload/optimizer_store.h):
// the steps must still be bitwise those of the in-memory world of one (losses, norms,
// parameters, moments), with one micro-batch per step and with several, and the gradient memory
// must read as zero and be out of the resident set after a step.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

#include "offload/optimizer_store.h"
#include "parallel/hdp_step.h"
#include "parallel/world_of_one.h"
#include "scheduler/cost_model.h"
#include "scheduler/packed_plan.h"
#include "tests/offload/offload_test_util.h"

namespace seqmesh {
namespace {

ModelConfig Config() {
  ModelConfig c;
  c.vocab = 300;
  c.hidden = 64;
  c.layers = 3;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 160;
  return c;
}

constexpr int64_t kCapacity = 96;

void ReadTokens(uint64_t seq, int64_t begin, int64_t end, std::vector<int32_t>& out) {
  for (int64_t i = begin; i < end; ++i)
    out.push_back(static_cast<int32_t>((seq * 13 + i * 7 + 3) % 300));
}

struct Rank {
  WorldOfOne comm;
  NoRingLink link;
  HdpStep hdp;
  explicit Rank(OptimizerStateFactory state)
      : hdp(Config(), HdpStepOptions{kCapacity, {}, nullptr, std::move(state)}, comm, link,
            AdamWConfig{}) {
    hdp.model().InitRandom(3, 0.1f);
  }
};

std::vector<float> Moments(const HdpStep& hdp) {
  std::vector<float> m, v;
  hdp.sync().ForEachMomentPiece([&](size_t, int64_t, const float* pm, const float* pv, int64_t n) {
    m.insert(m.end(), pm, pm + n);
    v.insert(v.end(), pv, pv + n);
  });
  m.insert(m.end(), v.begin(), v.end());
  return m;
}

// Resident pages among the tensor's whole pages (mincore).
size_t ResidentPages(const Tensor& t) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data());
  const uintptr_t lo = (begin + page - 1) / page * page, hi = (begin + t.bytes()) / page * page;
  if (hi <= lo) return 0;
  std::vector<unsigned char> vec((hi - lo) / page);
  EXPECT_EQ(0, mincore(reinterpret_cast<void*>(lo), hi - lo, vec.data()));
  size_t n = 0;
  for (unsigned char c : vec) n += c & 1;
  return n;
}

void CheckHandOffEqualsInMemory(const std::vector<int64_t>& lengths) {
  const testing::ScratchDir dir;
  OffloadConfig config;
  config.optimizer = OffloadDevice::kNvme;
  config.nvme_path = dir.path();
  config.sub_group_size = 7000;  // sub-groups straddle the buckets' boundaries
  config.block_size = 32 << 10;
  Rank mem({}), off([&](std::span<const Tensor> params) {
    return std::make_unique<OffloadedOptimizerStateStore>(params, config);
  });
  ASSERT_TRUE(off.hdp.sync().hands_off_gradients());
  ASSERT_FALSE(mem.hdp.sync().hands_off_gradients());
  const scheduler::PackedPlan packed =
      scheduler::PlanPacked(scheduler::CostModel{}, lengths, kCapacity, 1, 0);
  int64_t tokens = 0;
  for (int64_t l : lengths) tokens += l;
  for (int step = 0; step < 3; ++step) {
    const HdpStepResult a = mem.hdp.Run(packed.plan, tokens, ReadTokens, 1e-3f, 1.0f);
    const HdpStepResult b = off.hdp.Run(packed.plan, tokens, ReadTokens, 1e-3f, 1.0f);
    ASSERT_EQ(a.run.loss, b.run.loss) << "step " << step;
    ASSERT_EQ(a.grad_norm, b.grad_norm) << "step " << step;
    const std::vector<Tensor>& pm = mem.hdp.model().params();
    const std::vector<Tensor>& po = off.hdp.model().params();
    for (size_t t = 0; t < pm.size(); ++t)
      ASSERT_EQ(0, std::memcmp(pm[t].data(), po[t].data(), pm[t].bytes()))
          << pm[t].name() << " after step " << step + 1;
    // The gradients were handed on: their whole pages not resident (looked at first: reading
    // maps the zero page) and zero.
    for (const Tensor& g : off.hdp.model().grads())
      EXPECT_EQ(ResidentPages(g), 0u) << g.name() << " is resident after the step";
    for (const Tensor& g : off.hdp.model().grads())
      for (int64_t i = 0; i < g.numel(); ++i) ASSERT_EQ(g.f32()[i], 0.0f) << g.name();
  }
  EXPECT_EQ(Moments(mem.hdp), Moments(off.hdp));
}

TEST(GradientHandOff, OneMicroBatchPerStepIsBitwiseInMemory) { CheckHandOffEqualsInMemory({90}); }

TEST(GradientHandOff, SeveralMicroBatchesAndCutSequencesAreBitwiseInMemory) {
  CheckHandOffEqualsInMemory({90, 140, 20, 61});
}

// The store refuses an update whose gradients were not all handed in (a caller that skipped
// GradientsReady would otherwise update from stale gradients).
TEST(GradientHandOff, AnUpdateWithoutEveryGradientIsAnError) {
  const testing::ScratchDir dir;
  OffloadConfig config;
  config.optimizer = OffloadDevice::kNvme;
  config.nvme_path = dir.path();
  config.sub_group_size = 1000;
  std::vector<float> p(2500, 1.0f), g(2500, 0.5f);
  std::vector<Tensor> params = {Tensor("w", DType::kF32, Shape{2500}, p.data())};
  std::vector<Tensor> grads = {Tensor("grad.w", DType::kF32, Shape{2500}, g.data())};
  OffloadedOptimizerStateStore store(params, config);
  store.HoldGradients();
  auto noop = [](std::span<const OptimizerSlice>) {};
  try {
    store.Visit(params, grads, StateAccess::kUpdate, noop);
    FAIL() << "an update without gradients ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("before the gradients of sub-group 0"), std::string::npos)
        << e.what();
  }
  store.GradientsReady(grads, 0, 1);
  int64_t seen = 0;
  store.Visit(params, grads, StateAccess::kUpdate, [&](std::span<const OptimizerSlice> slices) {
    for (const OptimizerSlice& s : slices)
      for (int64_t i = 0; i < s.count; ++i, ++seen) ASSERT_EQ(s.grad[i], 0.5f);
  });
  EXPECT_EQ(seen, 2500);
}

}  // namespace
}  // namespace seqmesh
