// The optimal plan of a small batch (issue 15, item 4): branch and bound over every ring size of
// every sequence and every start order, for judging the balanced planner and the lower bound on
// cases small enough to solve (up to 16 ranks and about 20 sequences).
//
// The model is the simulator's (scheduler/plan.h) for plans whose rings hold one sequence:
//   - every sequence is one item: local (D = 1, only when s <= C) or a ring of D ranks, any D from
//     ShardSequence's minimum (no offload) up to N, costing each member t(s, D) =
//     SequenceRingCost(s, D).total() (a short sequence may take a ring too);
//   - short sequences are never split, and a local micro-batch of several of them costs the sum of
//     their costs, so packing them into micro-batches of C changes nothing: this needs a cost
//     file whose local pass has no per-pass ms (pass_ms_1 = 0), checked;
//   - a ring occupies its D ranks from its start, when the last of them is free, to its end; the
//     step is the last end plus step_fixed_ms;
//   - no contended pass calibrations (checked): Simulate then replays a plan once.
// Search: items are started in non-decreasing start order, each on the D ranks free first. Any
// plan can be replayed that way without any item starting later (the sorted ready times of the
// replay stay componentwise below the plan's), so some such order is optimal. Widths that are
// slower than a narrower one are never tried; equal lengths are one item type; a node is cut when
// max(its last end, now + the slowest remaining item's fastest time, (ranks' busy time + the
// remaining items' least area) / N) reaches the best step so far (first the balanced plan's), and
// when the same remaining items and the same ready times relative to now were reached before at
// an earlier or equal time.
#pragma once

#include <cstdint>
#include <vector>

#include "scheduler/cost_model.h"
#include "scheduler/plan.h"

namespace seqmesh::scheduler {

struct ExactOptions {
  int num_ranks = 0;
  int64_t capacity = 0;            // C, tokens per rank
  int64_t max_nodes = 20'000'000;  // search nodes before giving up (optimal = false)
};

struct ExactResult {
  double step_ms = 0;    // the best plan's step (with step_fixed_ms), as Simulate replays it
  bool optimal = false;  // the search finished: no plan of the model is faster
  int64_t nodes = 0;     // search nodes visited
  Plan plan;             // the best plan found ("exact"), one item per sequence
};

ExactResult PlanExact(const CostModel& cost, const std::vector<int64_t>& lengths,
                      const ExactOptions& options);

}  // namespace seqmesh::scheduler
