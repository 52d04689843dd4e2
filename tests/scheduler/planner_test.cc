// Planner invariants on thousands of random batches, and small cases solved by hand.
#include "scheduler/planner.h"

#include <gtest/gtest.h>

#include <random>

#include "runtime/check.h"
#include "scheduler/plan_validator.h"
#include "tests/scheduler/test_cost.h"

namespace seqmesh::scheduler {
namespace {

TEST(Sharding, MinimalRingHoldsAtMostCapacity) {
  CostModel c = TestCost();
  EXPECT_EQ(ShardSequence(c, 8192, 8192, false).ring_size, 1);
  EXPECT_EQ(ShardSequence(c, 8193, 8192, false).ring_size, 2);
  EXPECT_EQ(ShardSequence(c, 768 * 1024, 8192, false).ring_size, 96);  // the paper's example
  EXPECT_EQ(ShardSequence(c, 101, 11, false).ring_size, 11);  // odd C: zigzag chunks round up
}

TEST(Sharding, OffloadShrinksRingsOnlyWhenOverlapHolds) {
  CostModel c = TestCost();
  c.layers_per_rank = 10;
  c.a2 = 1;  // tiny activations: full offload always overlaps
  Shard s = ShardSequence(c, 80000, 8000, true);
  // r = 1 keeps 2 of 10 layers resident: 5x the tokens per rank.
  EXPECT_EQ(s.ring_size, 2);
  EXPECT_GT(s.offload_ratio, 0.0);
  c.a2 = 1e12;  // huge activations: transfers never hide, no offload
  EXPECT_EQ(ShardSequence(c, 80000, 8000, true).ring_size, 10);
}

// Workers offload whole layers: the ratio is the least multiple of 1/(l - 2) that fits. 24,000
// tokens on one rank of 8,000 need a resident fraction of 1/3: r = 5/6 by Eq. 3, 7/8 rounded up
// (resident 0.3; 6/8 would leave 0.4, 9,600 tokens).
TEST(Sharding, OffloadRatiosAreWholeLayers) {
  CostModel c = TestCost();
  c.layers_per_rank = 10;
  c.a2 = 1;
  Shard s = ShardSequence(c, 24000, 8000, true);
  EXPECT_EQ(s.ring_size, 1);
  EXPECT_DOUBLE_EQ(s.offload_ratio, 0.875);
  // An overlap bound of r <= 0.8 rounds down to 6/8 (resident 0.4: one rank would hold 9,600):
  // two ranks of 12,000 tokens, at the least fitting ratio 5/12 rounded up to 4/8 (resident 0.6,
  // 7,200 tokens; 3/8 would leave 8,400).
  c.d2h_gbps = c.h2d_gbps = 1;
  c.a2 = c.LayerMs(24000) * 1e6 / (0.8 * 24000);
  s = ShardSequence(c, 24000, 8000, true);
  EXPECT_EQ(s.ring_size, 2);
  EXPECT_DOUBLE_EQ(s.offload_ratio, 0.5);
  // The SSD's bandwidth instead of d2h/h2d: ten times less moves r below 1/8, no offload.
  EXPECT_EQ(ShardSequence(c, 24000, 8000, true, 0.05).ring_size, 3);
  EXPECT_DOUBLE_EQ(ShardSequence(c, 24000, 8000, true, 0.05).offload_ratio, 0);
}

// An offloaded item computes its recomputed layers again: k = r (l - 2) + 1 of l layers a third
// of T each.
TEST(Sharding, OffloadedItemsCostTheirRecompute) {
  CostModel c = TestCost();
  c.layers_per_rank = 10;
  const double plain = SequenceRingCost(c, 4000, 2).compute_ms;
  EXPECT_DOUBLE_EQ(SequenceRingCost(c, 4000, 2, 1.0).compute_ms,
                   plain + c.LayerMs(4000) / 2 * 10 * (9.0 / 30));
  EXPECT_DOUBLE_EQ(RingCost(c, {4000}, 2, 0, 0.5).compute_ms,
                   RingCost(c, {4000}, 2).compute_ms + c.LayerMs(4000) / 2 * 10 * (5.0 / 30));
}

TEST(BestFitPack, NeverSplitsAndFillsBins) {
  std::vector<int64_t> sizes = {6, 5, 4, 3, 2};
  auto bins = BestFitPack({0, 1, 2, 3, 4}, sizes, 10, true);
  ASSERT_EQ(bins.size(), 2u);  // {6,4} and {5,3,2}: optimal
  for (auto& b : bins) {
    int64_t t = 0;
    for (int32_t i : b) t += sizes[i];
    EXPECT_EQ(t, 10);
  }
}

TEST(HandSolved, FourEqualPacksOnFourRanksRunInParallel) {
  CostModel c = TestCost();
  PlannerOptions o{4, 100, 400, false, true};
  Plan p = PlanBalanced(c, {100, 100, 100, 100}, o);
  auto m = Simulate(c, p);
  EXPECT_DOUBLE_EQ(m.step_ms, c.LayerMs(100) * c.layers_per_rank);
  EXPECT_DOUBLE_EQ(p.lower_bound_ms, m.step_ms);  // optimal
  EXPECT_NEAR(m.busy_fraction, 1.0, 1e-12);
}

// The replay with pass calibrations, by hand: ranks 0-1 run a ring of 2 over one 200-token
// sequence while rank 2 runs a local 100-token item for all of it (contention 1), or for half
// of the ring's time, or nothing (contention 0).
TEST(HandSolved, ContendedRingCostsFollowTheOverlappingWork) {
  CostModel c = TestCost();
  c.kv_bytes_per_token = 0;  // no exposed transfer: compute only
  c.head_ms_per_token = 0.001;
  c.step_fixed_ms = 7;
  c.pass[1] = {1.0, 0.0};
  c.pass[2] = {1.2, 0.2};
  c.contended_pass[2] = {2.0, 1.0};
  const double l = c.layers_per_rank;
  const double ring_model = c.LayerMs(200) / 2 * l;  // a member's share of the layers
  const double plain = 1.2 * ring_model + 0.2 + 0.001 * 100;
  const double busy = 2.0 * ring_model + 1.0 + 0.001 * 100;
  auto local_ms = [&](int64_t s) { return c.LayerMs(s) * l + 0.001 * s; };
  auto plan_with = [&](std::vector<int64_t> locals) {
    Plan p;
    p.planner = "hand";
    p.capacity = 1000;
    p.num_ranks = 3;
    p.lengths = {200};
    WorkItem ring;
    ring.sequences = {0};
    ring.ring = {0, 1};
    p.items.push_back(ring);
    for (int64_t s : locals) {
      WorkItem local;
      local.sequences = {static_cast<int32_t>(p.lengths.size())};
      local.ring = {2};
      p.items.push_back(local);
      p.lengths.push_back(s);
    }
    return p;
  };
  // Nothing beside the ring: the plain calibration.
  Plan alone = plan_with({});
  EXPECT_NEAR(Simulate(c, alone).step_ms, plain + 7, 1e-9);
  EXPECT_NEAR(alone.items[0].duration_ms, plain, 1e-9);
  // A local item on rank 2 longer than the ring overlaps all of it: the contended calibration.
  ASSERT_GT(local_ms(900), busy);
  Plan covered = plan_with({900});
  auto m = Simulate(c, covered);
  EXPECT_NEAR(covered.items[0].duration_ms, busy, 1e-9);
  EXPECT_NEAR(m.step_ms, local_ms(900) + 7, 1e-9);
  // The contention the first replay saw is the weight: a local item that ends at a known share
  // of the plain ring's time gives that mix.
  const int64_t s_half = 60;
  Plan part = plan_with({s_half});
  Simulate(c, part);
  const double w = std::min(1.0, local_ms(s_half) / plain);
  ASSERT_GT(w, 0.1);
  ASSERT_LT(w, 0.9);
  EXPECT_NEAR(part.items[0].duration_ms, (1 - w) * plain + w * busy, 1e-9);
  // Another ring beside it competes as local work does: two rings of 2 on 4 ranks, side by side,
  // are each costed contended.
  Plan two;
  two.planner = "hand";
  two.capacity = 1000;
  two.num_ranks = 4;
  two.lengths = {200, 200};
  for (int k = 0; k < 2; ++k) {
    WorkItem ring;
    ring.sequences = {k};
    ring.ring = {2 * k, 2 * k + 1};
    two.items.push_back(ring);
  }
  EXPECT_NEAR(Simulate(c, two).step_ms, busy + 7, 1e-9);
  EXPECT_NEAR(two.items[0].duration_ms, busy, 1e-9);
  EXPECT_NEAR(two.items[1].duration_ms, busy, 1e-9);
  // The wire plan carries the replayed durations and the step with the fixed part.
  proto::StepPlan wire = ToStepPlan(c, covered, 0);
  EXPECT_NEAR(wire.ranks(0).micro_batches(0).estimated_duration_ms(), busy, 1e-9);
  EXPECT_NEAR(wire.estimated_step_ms(), local_ms(900) + 7, 1e-9);
}

TEST(HandSolved, LongSequenceTakesARingAndShortsFillTheRest) {
  CostModel c = TestCost();
  PlannerOptions o{4, 100, 400, false, false};
  // 300 tokens need 3 ranks; the 100-token sequence takes the 4th.
  Plan p = PlanBalanced(c, {300, 100}, o);
  ASSERT_EQ(p.items.size(), 2u);
  EXPECT_EQ(p.items[0].ring.size(), 3u);
  EXPECT_EQ(p.items[1].ring.size(), 1u);
  auto m = Simulate(c, p);
  EXPECT_DOUBLE_EQ(
      m.step_ms, std::max(SequenceRingCost(c, 300, 3).total(), c.LayerMs(100) * c.layers_per_rank));
}

TEST(HandSolved, StaticMeshPaysTheRingForShortSequences) {
  CostModel c = TestCost();
  // Context 400 over C = 100: d_cp = 4, one pack of four 96-token sequences (multiples of
  // 2 d_cp, so no padding) on all 4 ranks.
  PlannerOptions o{4, 100, 400, false, true};
  Plan s = PlanStatic(c, {96, 96, 96, 96}, o);
  ASSERT_EQ(s.items.size(), 1u);
  EXPECT_EQ(s.items[0].ring.size(), 4u);
  Plan b = PlanBalanced(c, {96, 96, 96, 96}, o);
  EXPECT_LT(Simulate(c, b).step_ms, Simulate(c, s).step_ms);
}

TEST(HandSolved, WideningShortensACriticalRing) {
  CostModel c = TestCost();
  c.kv_bytes_per_token = 1;  // communication always hidden: a wider ring is strictly faster
  PlannerOptions o{8, 1000, 8000, false, true};
  Plan wide = PlanBalanced(c, {4000}, o);
  o.widen = false;
  Plan narrow = PlanBalanced(c, {4000}, o);
  EXPECT_EQ(narrow.items[0].ring.size(), 4u);
  EXPECT_EQ(wide.items[0].ring.size(), 8u);
  EXPECT_LT(Simulate(c, wide).step_ms, Simulate(c, narrow).step_ms);
}

// Thousands of random batches on small meshes: every planner's plan validates, covers every
// token once, and (HDP planners) never beats the lower bound.
TEST(PlannerProperty, RandomBatchesGiveValidPlansAboveTheBound) {
  CostModel c = TestCost();
  std::mt19937_64 rng(2024);
  int checked = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    const int ranks = 1 + static_cast<int>(rng() % 16);
    const int64_t capacity = 2 * (8 + static_cast<int64_t>(rng() % 100));  // even, as real C
    const int d_cp = 1 + static_cast<int>(rng() % ranks);
    const int64_t context = capacity * d_cp;
    std::vector<int64_t> lengths(1 + rng() % 30);
    for (auto& s : lengths) {
      int64_t max_len = (rng() % 4 == 0) ? context : std::min<int64_t>(capacity, context);
      s = 1 + static_cast<int64_t>(rng() % max_len);
    }
    PlannerOptions o{ranks, capacity, context, trial % 3 == 0, trial % 2 == 0};
    for (const char* name : {"static", "naive", "pow2", "balanced"}) {
      bool pow2_fits = true;
      if (std::string(name) == "pow2") {
        for (int64_t s : lengths) {
          int d = 1;
          while (d < ShardSequence(c, s, capacity, false).ring_size) d *= 2;
          pow2_fits &= d <= ranks;
        }
      }
      if (!pow2_fits) continue;
      Plan p = PlanByName(name, c, lengths, o);
      auto errors = ValidateStepPlan(ToStepPlan(c, p, trial));
      ASSERT_TRUE(errors.empty()) << name << " trial " << trial << ": " << errors[0];
      auto m = Simulate(c, p);
      if (std::string(name) != "static") {
        ASSERT_LE(p.lower_bound_ms, m.step_ms * (1 + 1e-9)) << name << " trial " << trial;
      }
      ASSERT_LE(m.busy_fraction, 1 + 1e-9);
      ++checked;
    }
  }
  EXPECT_GT(checked, 5000);
}

TEST(Planner, RejectsBadOptions) {
  CostModel c = TestCost();
  EXPECT_THROW(PlanBalanced(c, {10}, {4, 0, 100, false, true}), Error);
  EXPECT_THROW(PlanBalanced(c, {10}, {0, 10, 100, false, true}), Error);
  EXPECT_THROW(PlanBalanced(c, {1000}, {4, 100, 1000, false, true}), Error);  // needs 10 ranks
  EXPECT_THROW(PlanByName("fifo", c, {10}, {4, 100, 100, false, true}), Error);
}

}  // namespace
}  // namespace seqmesh::scheduler
