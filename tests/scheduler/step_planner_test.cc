// StepPlanner: the batches are the sampler's, every plan is valid and covers its batch, a planner
// restarted at a cursor plans the same steps, the refit predicts without changing plans under
// RefitMode::kPredict and plans with it under kPlan, and a sequence too long for the job is named.
#include "scheduler/step_planner.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "scheduler/packed_plan.h"
#include "scheduler/plan_validator.h"
#include "tests/runtime/test_util.h"
#include "tests/scheduler/test_cost.h"

namespace seqmesh::scheduler {
namespace {

using seqmesh::testing::ThrowsWith;

// Two datasets of mixed lengths up to 4 ranks of 512 tokens.
BlendedBatchSampler Sampler(int32_t longest = 2000) {
  std::mt19937 rng(3);
  std::vector<BlendSource> sources(2);
  sources[0].weight = 0.7;
  sources[1].weight = 0.3;
  for (BlendSource& s : sources)
    for (int i = 0; i < 300; ++i) s.lengths.push_back(20 + static_cast<int32_t>(rng() % longest));
  return BlendedBatchSampler(sources, /*seed=*/11, /*token_budget=*/8192);
}

StepPlannerOptions Options(RefitMode refit = RefitMode::kPredict) {
  StepPlannerOptions o;
  o.num_ranks = 4;
  o.capacity = 512;
  o.planner = PlannerKind::kBalanced;
  o.refit = refit;
  return o;
}

StepPlanner Planner(RefitMode refit = RefitMode::kPredict, int32_t longest = 2000) {
  const BlendedBatchSampler sampler = Sampler(longest);
  return StepPlanner(TestCost(), Options(refit), sampler, {"a", "b"}, 0, sampler.Start());
}

// Each rank's micro-batches took `factor` times the plan's estimate of them.
std::vector<std::vector<std::optional<MicroBatchTime>>> TimesAt(const proto::StepPlan& plan,
                                                                double factor) {
  std::vector<std::vector<std::optional<MicroBatchTime>>> times(plan.ranks_size());
  for (int r = 0; r < plan.ranks_size(); ++r)
    for (const proto::MicroBatch& mb : plan.ranks(r).micro_batches())
      times[r].push_back(
          MicroBatchTime{factor * mb.estimated_start_ms(),
                         factor * (mb.estimated_start_ms() + mb.estimated_duration_ms())});
  return times;
}

TEST(StepPlanner, PlansTheSamplersBatchesWithEveryTokenOnce) {
  const BlendedBatchSampler sampler = Sampler();
  BlendCursor cursor = sampler.Start();
  StepPlanner planner = Planner();
  for (uint64_t k = 0; k < 4; ++k) {
    const PlannedStep s = planner.Next();
    EXPECT_EQ(s.step, k);
    EXPECT_EQ(s.plan.step(), k);
    EXPECT_EQ(s.batch, sampler.Next(cursor));
    EXPECT_EQ(s.cursor_after, cursor);
    EXPECT_TRUE(ValidateStepPlan(s.plan).empty());
    ASSERT_EQ(s.plan.sequences_size(), static_cast<int>(s.batch.size()));
    int64_t tokens = 0;
    uint64_t targets = 0;
    for (size_t i = 0; i < s.batch.size(); ++i) {
      EXPECT_EQ(s.lengths[i], sampler.Length(s.batch[i]));
      EXPECT_EQ(s.plan.sequences(static_cast<int>(i)).length(),
                static_cast<uint64_t>(s.lengths[i]));
      tokens += s.lengths[i];
      targets += static_cast<uint64_t>(s.lengths[i] - 1);
    }
    EXPECT_EQ(s.tokens, tokens);
    EXPECT_EQ(s.target_tokens, targets);
    EXPECT_GE(s.tokens, 8192 - 2020) << "the batch fills the token budget";
    // Nothing learned yet: the prediction is the plan's own estimate.
    EXPECT_DOUBLE_EQ(s.predicted_ms, s.plan.estimated_step_ms());
  }
  EXPECT_EQ(planner.next_step(), 4u);
}

TEST(StepPlanner, RestartedAtAStepsCursorPlansTheSameSteps) {
  StepPlanner first = Planner();
  std::vector<PlannedStep> steps;
  for (int k = 0; k < 5; ++k) steps.push_back(first.Next());
  StepPlanner again(TestCost(), Options(), Sampler(), {"a", "b"}, 3, steps[2].cursor_after);
  for (int k = 3; k < 5; ++k) {
    const PlannedStep s = again.Next();
    EXPECT_EQ(s.plan.SerializeAsString(), steps[k].plan.SerializeAsString()) << "step " << k;
    EXPECT_EQ(s.batch, steps[k].batch);
  }
}

// Sequences of at most 420 tokens: every item runs on one rank, so after the first step every
// item of a step has its ring size's factor.
TEST(StepPlanner, PredictModeLearnsTheRefitWithoutChangingPlans) {
  StepPlanner learning = Planner(RefitMode::kPredict, 400), off = Planner(RefitMode::kOff, 400);
  for (int k = 0; k < 6; ++k) {
    const PlannedStep s = learning.Next(), o = off.Next();
    EXPECT_EQ(s.plan.SerializeAsString(), o.plan.SerializeAsString()) << "step " << k;
    EXPECT_DOUBLE_EQ(o.predicted_ms, o.plan.estimated_step_ms());
    if (k >= 3) {
      // Three steps at twice the estimate and 5 ms beside the passes: the prediction has both.
      EXPECT_NEAR(s.predicted_ms, 2 * s.plan.estimated_step_ms() + 5, 1e-6 * s.predicted_ms)
          << "step " << k;
    }
    learning.Learn(s, TimesAt(s.plan, 2.0), 5.0);
    off.Learn(o, TimesAt(o.plan, 2.0), 5.0);
  }
  EXPECT_TRUE(off.RefitScales().empty());
  for (const auto& [d, k] : learning.RefitScales()) EXPECT_NEAR(k, 2.0, 1e-9) << "ring size " << d;
  EXPECT_NEAR(learning.Refitted().step_fixed_ms, 5.0, 1e-12);
}

TEST(StepPlanner, PlanModePlansWithTheRefitAndKeepsTheFilesDurations) {
  StepPlanner planner = Planner(RefitMode::kPlan), file = Planner(RefitMode::kOff);
  for (int k = 0; k < 5; ++k) {
    const PlannedStep s = planner.Next(), f = file.Next();
    // The plan's estimate is the refit's, and the prediction; the items keep the file's times.
    EXPECT_DOUBLE_EQ(s.predicted_ms, s.plan.estimated_step_ms());
    if (k >= 3) {
      EXPECT_GT(s.plan.estimated_step_ms(), 1.9 * f.plan.estimated_step_ms()) << "step " << k;
    }
    Plan replay = s.items;
    Simulate(TestCost(), replay);
    for (size_t i = 0; i < s.items.items.size(); ++i)
      EXPECT_EQ(s.items.items[i].duration_ms, replay.items[i].duration_ms) << "item " << i;
    // Learned against the file's durations: the factor stays 2, never compounds.
    Plan file_items = s.items;
    proto::StepPlan file_plan = ToStepPlan(TestCost(), file_items, s.step);
    planner.Learn(s, TimesAt(file_plan, 2.0), 0.0);
    file.Learn(f, TimesAt(f.plan, 2.0), 0.0);
  }
  for (const auto& [d, k] : planner.RefitScales()) EXPECT_NEAR(k, 2.0, 1e-9) << "ring size " << d;
}

TEST(StepPlanner, ASequenceLongerThanTheJobCanHoldIsNamed) {
  const BlendedBatchSampler sampler = Sampler(/*longest=*/5000);
  StepPlanner planner(TestCost(), Options(), sampler, {"short", "long"}, 0, sampler.Start());
  EXPECT_TRUE(ThrowsWith(
      [&] {
        for (int k = 0; k < 20; ++k) planner.Next();
      },
      "ranks of capacity 512 (training.micro_batch_tokens); the job has 4 ranks"));
}

}  // namespace
}  // namespace seqmesh::scheduler

namespace seqmesh::scheduler {
namespace {

// A world of one cuts what N ranks would ring: the packed plan, valid, every token once, long
// sequences as pieces of at most C tokens that restart positions, pieces in PackMicroBatches'
// order; N ranks of a packed plan (validation) get its micro-batches round-robin.
TEST(PackedPlan, AWorldOfOneCutsLongSequencesIntoPiecesInPackOrder) {
  const std::vector<int64_t> lengths = {1200, 30, 512, 513, 7, 0, 260};
  const PackedPlan p = PlanPacked(TestCost(), lengths, 512, 1, 9);
  EXPECT_TRUE(ValidateStepPlan(p.plan).empty());
  EXPECT_EQ(p.cut_sequences, 2);  // 1200 and 513
  EXPECT_EQ(p.plan.step(), 9u);
  EXPECT_EQ(p.plan.planner(), "packed");
  std::vector<int64_t> ids(lengths.size());
  std::vector<int32_t> lens;
  for (size_t i = 0; i < lengths.size(); ++i) {
    ids[i] = static_cast<int64_t>(i);
    lens.push_back(static_cast<int32_t>(lengths[i]));
  }
  const PackResult want = PackMicroBatches(ids, lens, 512);
  const proto::RankPlan& r0 = p.plan.ranks(0);
  ASSERT_EQ(r0.micro_batches_size(), static_cast<int>(want.micro_batches.size()));
  for (int m = 0; m < r0.micro_batches_size(); ++m) {
    const proto::MicroBatch& mb = r0.micro_batches(m);
    ASSERT_EQ(mb.segments_size(), static_cast<int>(want.micro_batches[m].pieces.size()));
    EXPECT_EQ(mb.ring_size(), 0);
    for (int s = 0; s < mb.segments_size(); ++s) {
      const PackedPiece& piece = want.micro_batches[m].pieces[s];
      const proto::Segment& seg = mb.segments(s);
      EXPECT_EQ(seg.sequence_id(), static_cast<uint64_t>(piece.id));
      ASSERT_EQ(seg.ranges_size(), 1);
      EXPECT_EQ(seg.ranges(0).begin(), static_cast<uint64_t>(piece.begin));
      EXPECT_EQ(seg.ranges(0).end(), static_cast<uint64_t>(piece.begin + piece.length));
      EXPECT_EQ(seg.restart_positions(), piece.id == 0 || piece.id == 3) << "piece of " << piece.id;
    }
  }
  // The refit's items are the same micro-batches over the pieces.
  EXPECT_EQ(p.pieces.items.size(), want.micro_batches.size());

  const PackedPlan dealt = PlanPacked(TestCost(), lengths, 512, 3, 9);
  EXPECT_TRUE(ValidateStepPlan(dealt.plan).empty());
  for (int r = 0; r < 3; ++r)
    for (int m = 0; m < dealt.plan.ranks(r).micro_batches_size(); ++m)
      EXPECT_EQ(dealt.plan.ranks(r).micro_batches(m).segments(0).ranges(0).begin(),
                r0.micro_batches(3 * m + r).segments(0).ranges(0).begin());
}

TEST(PackedPlan, RestartingPositionsOnARingIsInvalid) {
  PackedPlan p = PlanPacked(TestCost(), {600}, 512, 1, 0);
  proto::StepPlan& plan = p.plan;
  plan.mutable_ranks(0)->mutable_micro_batches(0)->mutable_segments(0)->add_ranges()->set_begin(0);
  bool named = false;
  for (const std::string& e : ValidateStepPlan(plan))
    named |= e.find("restarts positions but is not one range of a local micro-batch") !=
             std::string::npos;
  EXPECT_TRUE(named);
}

TEST(StepPlanner, AWorldOfOneTrainsEverySequenceCuttingTheLongOnes) {
  const BlendedBatchSampler sampler = Sampler();
  StepPlannerOptions o = Options();
  o.num_ranks = 1;
  StepPlanner planner(TestCost(), o, sampler, {"a", "b"}, 0, sampler.Start());
  int64_t cut = 0;
  for (int k = 0; k < 5; ++k) {
    const PlannedStep s = planner.Next();
    EXPECT_TRUE(ValidateStepPlan(s.plan).empty());
    EXPECT_EQ(s.plan.planner(), "packed");
    int64_t longer = 0;
    for (int64_t len : s.lengths) longer += len > 512;
    EXPECT_EQ(s.cut_sequences, longer);
    cut += s.cut_sequences;
  }
  EXPECT_GT(cut, 0);
}

}  // namespace
}  // namespace seqmesh::scheduler
