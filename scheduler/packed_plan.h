// The packed plan: a global batch cut to micro-batches of at most C tokens without rings, the
// plan of a world of one rank (`seqmesh train`) and of validation passes on any number of ranks.
//
// Sequences longer than C are cut into pieces of C tokens (the last shorter); every piece is a
// document of its own that restarts positions at 0 (proto Segment.restart_positions) and keeps
// the sequence's next token as its last target. Pieces are packed best-fit decreasing
// (runtime's PackMicroBatches) and the micro-batches dealt to ranks round-robin in pack order, so
// a world of one runs them in pack order.
#pragma once

#include <cstdint>
#include <vector>

#include "proto/step_plan.pb.h"
#include "scheduler/cost_model.h"
#include "scheduler/plan.h"

namespace seqmesh::scheduler {

struct PackedPlan {
  proto::StepPlan plan;  // sequences are the batch's; segments are pieces
  // The same micro-batches as planner items over the pieces (lengths are the pieces'), replayed
  // under the cost model: what the refit measures against.
  Plan pieces;
  int64_t cut_sequences = 0;  // sequences longer than the capacity
};

PackedPlan PlanPacked(const CostModel& cost, const std::vector<int64_t>& lengths, int64_t capacity,
                      int num_ranks, uint64_t step);

}  // namespace seqmesh::scheduler
