// The online refit (scheduler/refit.h): factors from crafted measurements, the micro-batch
// layout it reads against the wire plan's, and a refit model that reproduces the measured step.
#include "scheduler/refit.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/check.h"
#include "scheduler/planner.h"
#include "tests/scheduler/test_cost.h"

namespace seqmesh::scheduler {
namespace {

TEST(Refit, FactorIsTheMedianRatioOverTheWindow) {
  Refit r(/*window=*/4, /*min_samples=*/3);
  EXPECT_EQ(r.Scale(2), 1.0);
  r.AddItem(2, 15, 10);
  r.AddItem(2, 30, 10);
  EXPECT_EQ(r.Scale(2), 1.0) << "two samples are fewer than min_samples";
  EXPECT_TRUE(r.Scales().empty());
  r.AddItem(2, 12, 10);
  EXPECT_NEAR(r.Scale(2), 1.5, 1e-12);  // median of 1.2, 1.5, 3
  EXPECT_EQ(r.Scale(1), 1.0) << "other ring sizes are untouched";
  // Bad samples are ignored, not counted.
  r.AddItem(2, -1, 10);
  r.AddItem(2, 5, 0);
  r.AddItem(2, NAN, 10);
  r.AddItem(0, 5, 10);
  EXPECT_NEAR(r.Scale(2), 1.5, 1e-12);
  // The window keeps the last 4: 1.5, 3, 1.2, 0.5 -> geometric middle of 1.2 and 1.5.
  r.AddItem(2, 5, 10);
  EXPECT_NEAR(r.Scale(2), std::sqrt(1.2 * 1.5), 1e-12);
  // A new regime replaces the old one within a window.
  for (int i = 0; i < 4; ++i) r.AddItem(2, 8, 10);
  EXPECT_NEAR(r.Scale(2), 0.8, 1e-12);
  EXPECT_EQ(r.Scales().size(), 1u);

  EXPECT_FALSE(r.FixedMs().has_value());
  for (double ms : {7.0, 100.0, 9.0}) r.AddFixed(ms);
  EXPECT_EQ(*r.FixedMs(), 9.0);
  EXPECT_THROW(Refit(2, 3), Error);
}

// Four ranks: a local item on 0, a ring {1, 2}, a local item on 3, then a ring {3, 0}.
Plan CraftedPlan() {
  Plan p;
  p.num_ranks = 4;
  p.lengths = {100, 200, 100, 300};
  p.items = {{{0}, {0}}, {{1}, {1, 2}}, {{2}, {3}}, {{3}, {3, 0}}};
  return p;
}

TEST(Refit, MicroBatchLayoutIsTheWirePlans) {
  CostModel c = TestCost();
  Plan p = CraftedPlan();
  Simulate(c, p);
  const std::vector<std::vector<int>> items = MicroBatchItems(p);
  const std::vector<std::vector<int>> want = {{0, 3}, {1}, {1}, {2, 3}};
  EXPECT_EQ(items, want);
  // And on planners' plans of random batches, against ToStepPlan itself.
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int64_t> lengths;
    for (int i = 0; i < 12; ++i) lengths.push_back(64 + rng() % 1500);
    for (const char* name : {"balanced", "naive", "static"}) {
      Plan plan = PlanByName(name, c, lengths, {4, 512, 2048, false, true});
      Simulate(c, plan);
      const proto::StepPlan wire = ToStepPlan(c, plan, 0);
      const auto layout = MicroBatchItems(plan);
      for (int r = 0; r < 4; ++r) {
        ASSERT_EQ(static_cast<int>(layout[r].size()), wire.ranks(r).micro_batches_size());
        for (int m = 0; m < wire.ranks(r).micro_batches_size(); ++m) {
          const WorkItem& item = plan.items[layout[r][m]];
          const proto::MicroBatch& mb = wire.ranks(r).micro_batches(m);
          EXPECT_EQ(std::max(1, mb.ring_size()), static_cast<int>(item.ring.size()));
          EXPECT_EQ(mb.estimated_start_ms(), item.start_ms);
        }
      }
    }
  }
}

TEST(Refit, StepMeasurementsGiveFactorsPerRingSize) {
  CostModel c = TestCost();
  Plan p = CraftedPlan();
  Simulate(c, p);
  Refit r(8, 1);
  auto t = [](double start, double dur) { return MicroBatchTime{start, start + dur}; };
  // Locals ran at 2x; the ring {1, 2} ran at 1.5x on its later member (rank 2), rank 1 having
  // waited 0.2 of its estimate for it; the ring {3, 0} at 1.5x on both.
  const double d0 = p.items[0].duration_ms, d1 = p.items[1].duration_ms;
  const double d2 = p.items[2].duration_ms, d3 = p.items[3].duration_ms;
  std::vector<std::vector<std::optional<MicroBatchTime>>> times = {{t(0, 2 * d0), t(50, 1.5 * d3)},
                                                                   {t(0, 1.7 * d1)},
                                                                   {t(3, 1.5 * d1)},
                                                                   {t(0, 2 * d2), t(50, 1.5 * d3)}};
  r.AddStep(p, times);
  EXPECT_NEAR(r.Scale(1), 2.0, 1e-9);
  EXPECT_NEAR(r.Scale(2), 1.5, 1e-9);
  // A ring with a member's time missing is skipped; the other items still count.
  Refit partial(8, 1);
  times[3][1].reset();
  partial.AddStep(p, times);
  EXPECT_NEAR(partial.Scale(2), 1.5, 1e-9) << "only the ring {1, 2} counted";
  times[1].clear();
  times[2].clear();
  Refit none(8, 1);
  none.AddStep(p, times);
  EXPECT_TRUE(none.Scales().count(1));
  EXPECT_FALSE(none.Scales().count(2));
}

TEST(Refit, AppliedModelScalesItemsAndReplacesTheFixedTime) {
  CostModel c = TestCost();
  c.step_fixed_ms = 5;
  Refit r(8, 1);
  r.AddItem(1, 20, 10);  // locals 2x
  r.AddItem(2, 15, 10);  // rings of 2 1.5x
  r.AddFixed(11);
  const CostModel k = r.Apply(c);
  EXPECT_EQ(k.step_fixed_ms, 11);
  EXPECT_EQ(c.step_fixed_ms, 5) << "the base model is unchanged";
  EXPECT_NEAR(RingCost(k, {300, 200}, 1).total(), 2 * RingCost(c, {300, 200}, 1).total(), 1e-12);
  EXPECT_NEAR(RingCost(k, {900}, 2).total(), 1.5 * RingCost(c, {900}, 2).total(), 1e-12);
  EXPECT_NEAR(SequenceRingCost(k, 900, 2).total(), 1.5 * SequenceRingCost(c, 900, 2).total(),
              1e-12);
  EXPECT_EQ(RingCost(k, {900}, 3).total(), RingCost(c, {900}, 3).total()) << "no factor for 3";
  // Against a base that already has factors (a refit file), the new factors multiply.
  CostModel refitted = c;
  refitted.scale = {{2, 1.2}, {4, 1.1}};
  const CostModel again = r.Apply(refitted);
  EXPECT_NEAR(again.Scale(2), 1.8, 1e-12);
  EXPECT_NEAR(again.Scale(1), 2.0, 1e-12);
  EXPECT_NEAR(again.Scale(4), 1.1, 1e-12);

  // The replay under the refit model: ring {1, 2} and local items run scaled, the ring {3, 0}
  // starts when the later of ranks 0 and 3 is free, and the step adds the measured fixed time.
  Plan base = CraftedPlan(), fit = CraftedPlan();
  Simulate(c, base);
  const double step = Simulate(k, fit).step_ms;
  const double ring_start = std::max(2 * base.items[0].duration_ms, 2 * base.items[2].duration_ms);
  EXPECT_NEAR(
      step,
      std::max(ring_start + 1.5 * base.items[3].duration_ms, 1.5 * base.items[1].duration_ms) + 11,
      1e-9);
}

}  // namespace
}  // namespace seqmesh::scheduler
