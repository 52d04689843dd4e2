// The validator accepts planner output and rejects each kind of broken plan, naming the rule.
#include "scheduler/plan_validator.h"

#include <gtest/gtest.h>

#include "runtime/check.h"
#include "scheduler/planner.h"

namespace seqmesh::scheduler {
namespace {

CostModel TestCost() {
  CostModel m;
  m.layers_per_rank = 4;
  m.a1 = 4e-8;
  m.b1 = 1.5e-3;
  m.kv_bytes_per_token = 1000;
  m.p2p_gbps = 10;
  return m;
}

// 4 ranks, capacity 100: a 250-token sequence on a ring of 3 and three short ones.
proto::StepPlan ValidPlan() {
  PlannerOptions o{4, 100, 400, false, false};
  Plan plan = PlanBalanced(TestCost(), {250, 60, 30, 50}, o);
  return ToStepPlan(TestCost(), plan, 0);
}

std::string Errors(const proto::StepPlan& p) {
  std::string all;
  for (const auto& e : ValidateStepPlan(p)) all += e + "\n";
  return all;
}

proto::MicroBatch* FirstRingMicroBatch(proto::StepPlan& p, int* rank) {
  for (int r = 0; r < p.ranks_size(); ++r)
    for (auto& mb : *p.mutable_ranks(r)->mutable_micro_batches())
      if (mb.ring_size() > 1) {
        *rank = r;
        return &mb;
      }
  return nullptr;
}

TEST(PlanValidator, AcceptsPlannerOutput) {
  auto p = ValidPlan();
  EXPECT_EQ(Errors(p), "");
  EXPECT_EQ(p.ring_order_size(), 1);
}

TEST(PlanValidator, RejectsTokenAssignedTwice) {
  auto p = ValidPlan();
  auto* mb = p.mutable_ranks(3)->add_micro_batches();
  auto* seg = mb->add_segments();
  seg->set_sequence_id(1);
  auto* r = seg->add_ranges();
  r->set_begin(0);
  r->set_end(10);
  std::string e = Errors(p);
  EXPECT_NE(e.find("[exactly-once] sequence 1: tokens [0, 10) assigned more than once"),
            std::string::npos)
      << e;
}

TEST(PlanValidator, RejectsMissingTokens) {
  auto p = ValidPlan();
  p.mutable_sequences(2)->set_length(40);  // sequence 2 now has 10 unassigned tokens
  std::string e = Errors(p);
  EXPECT_NE(e.find("[exactly-once] sequence 2: tokens [30, 40) not assigned"), std::string::npos)
      << e;
}

TEST(PlanValidator, RejectsCapacityOverflowNamingTheRank) {
  auto p = ValidPlan();
  p.set_capacity(80);
  std::string e = Errors(p);
  EXPECT_NE(e.find("[capacity] rank"), std::string::npos) << e;
  EXPECT_NE(e.find("> capacity 80"), std::string::npos) << e;
}

// distributed.offload: a 250-token sequence on 4-layer ranks of capacity 100 takes a ring of 2
// with r = 1/2 (126 tokens per rank, 3/4 of them resident: 94.5 <= 100); the plan validates, a
// ratio workers cannot run (not a multiple of 1/(l - 2)) or one that overfills the capacity
// does not.
TEST(PlanValidator, ChecksOffloadRatios) {
  CostModel c = TestCost();
  c.layers_per_rank = 4;
  c.a2 = 1;  // transfers always hide
  PlannerOptions o{4, 100, 400, true, false};
  Plan plan = PlanNaive(c, {250, 60, 30, 50}, o);  // minimal rings: Eq. 3's
  proto::StepPlan p = ToStepPlan(c, plan, 0);
  EXPECT_EQ(Errors(p), "");
  int rank = -1;
  proto::MicroBatch* ring = FirstRingMicroBatch(p, &rank);
  ASSERT_NE(ring, nullptr);
  EXPECT_EQ(ring->ring_size(), 2);
  EXPECT_DOUBLE_EQ(ring->offload_ratio(), 0.5);
  ring->set_offload_ratio(0.3);
  std::string e = Errors(p);
  EXPECT_NE(e.find("offload ratio 0.3 is not a multiple of 1/(l - 2) for l = 4"), std::string::npos)
      << e;
  ring->set_offload_ratio(0);  // 126 tokens at full residency
  e = Errors(p);
  EXPECT_NE(e.find("[capacity] rank " + std::to_string(rank)), std::string::npos) << e;
}

TEST(PlanValidator, RejectsRingListedDifferentlyByAMember) {
  auto p = ValidPlan();
  int rank;
  auto* mb = FirstRingMicroBatch(p, &rank);
  ASSERT_NE(mb, nullptr);
  mb->set_ring(0, mb->ring(0) == 3 ? 2 : 3);
  std::string e = Errors(p);
  EXPECT_NE(e.find("[ring-members]"), std::string::npos) << e;
}

TEST(PlanValidator, RejectsWrongRingPosition) {
  auto p = ValidPlan();
  int rank;
  auto* mb = FirstRingMicroBatch(p, &rank);
  mb->set_ring_position((mb->ring_position() + 1) % mb->ring_size());
  std::string e = Errors(p);
  EXPECT_NE(e.find("[ring-position] rank " + std::to_string(rank)), std::string::npos) << e;
}

TEST(PlanValidator, RejectsRankInTheSameRingTwice) {
  auto p = ValidPlan();
  int rank;
  auto mb = *FirstRingMicroBatch(p, &rank);
  mb.clear_segments();
  *p.mutable_ranks(rank)->add_micro_batches() = mb;
  std::string e = Errors(p);
  EXPECT_NE(e.find("[ring-slot] rank " + std::to_string(rank)), std::string::npos) << e;
}

TEST(PlanValidator, RejectsRingsOutOfGlobalOrder) {
  // Two rings over ranks {0, 1}; rank 1 runs them in the opposite order: deadlock.
  proto::StepPlan p;
  p.set_capacity(100);
  p.set_num_ranks(2);
  p.set_layers_per_rank(4);
  for (int s = 0; s < 2; ++s) {
    auto* seq = p.add_sequences();
    seq->set_id(s);
    seq->set_length(100);
    auto* op = p.add_ring_order();
    op->set_ring_id(s);
    op->add_ranks(0);
    op->add_ranks(1);
  }
  for (int r = 0; r < 2; ++r) p.add_ranks()->set_rank(r);
  for (int r = 0; r < 2; ++r)
    for (int k = 0; k < 2; ++k) {
      int ring = r == 0 ? k : 1 - k;
      auto* mb = p.mutable_ranks(r)->add_micro_batches();
      mb->add_ring(0);
      mb->add_ring(1);
      mb->set_ring_position(r);
      mb->set_ring_id(ring);
      auto* seg = mb->add_segments();
      seg->set_sequence_id(ring);
      auto* range = seg->add_ranges();
      range->set_begin(r * 50);
      range->set_end(r * 50 + 50);
    }
  std::string e = Errors(p);
  EXPECT_NE(e.find("[ring-order] rank 1 runs ring 0 after a ring that comes later"),
            std::string::npos)
      << e;
}

TEST(PlanValidator, RejectsMemberThatNeverRunsItsRing) {
  auto p = ValidPlan();
  int rank;
  FirstRingMicroBatch(p, &rank);
  auto* mbs = p.mutable_ranks(rank)->mutable_micro_batches();
  for (int i = 0; i < mbs->size(); ++i)
    if (mbs->Get(i).ring_size() > 1) {
      mbs->DeleteSubrange(i, 1);
      break;
    }
  std::string e = Errors(p);
  EXPECT_NE(e.find("member rank " + std::to_string(rank) + " does not run it"), std::string::npos)
      << e;
}

TEST(PlanValidator, RejectsUnknownSequenceAndBadRange) {
  auto p = ValidPlan();
  auto* seg = p.mutable_ranks(0)->add_micro_batches()->add_segments();
  seg->set_sequence_id(99);
  std::string e = Errors(p);
  EXPECT_NE(e.find("[unknown-sequence] rank 0"), std::string::npos) << e;
  p = ValidPlan();
  auto* r = p.mutable_ranks(0)->mutable_micro_batches(0)->mutable_segments(0)->mutable_ranges(0);
  r->set_end(r->begin());
  EXPECT_NE(Errors(p).find("[token-range]"), std::string::npos);
}

TEST(PlanValidator, CheckStepPlanThrows) {
  auto p = ValidPlan();
  p.set_capacity(1);
  EXPECT_THROW(CheckStepPlan(p), Error);
}

}  // namespace
}  // namespace seqmesh::scheduler
