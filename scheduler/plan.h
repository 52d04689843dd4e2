// The planner's in-memory plan, its cost under a CostModel, its replay (the simulator), and its
// conversion to the wire StepPlan (proto/step_plan.proto).
//
// Model of a step: every rank runs its micro-batch list in order; a micro-batch whose ring has D
// members occupies all D ranks at once and starts when the last of them is free; the step ends
// at gradient sync, i.e. when the last rank finishes, plus the cost file's step_fixed_ms
// (gradient sync and AdamW: the same for every plan).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proto/step_plan.pb.h"
#include "scheduler/cost_model.h"

namespace seqmesh::scheduler {

// One micro-batch placed on a ring of ranks (ring.size() == 1: local).
struct WorkItem {
  std::vector<int32_t> sequences;  // indices into Plan::lengths
  std::vector<int32_t> ring;       // members in ring order
  // Static mesh: each sequence is padded to a multiple of 2D before the zigzag split (as
  // TransformerEngine's THD layout requires); capacity then counts padded tokens.
  bool padded = false;
  double offload_ratio = 0;
  double start_ms = 0;
  double duration_ms = 0;  // set by Simulate (with contention); 0 before
};

struct ItemCost {
  double compute_ms = 0;  // per member
  double exposed_ms = 0;  // per member: ring transfer not hidden behind compute
  double total() const { return compute_ms + exposed_ms; }
};

// Per-member cost of running `lengths` zigzag-sharded over a ring of `ring_size` ranks, all
// layers: compute sum T(s)/D times the cost file's pass factor of D, plus its per-pass ms for
// each pass (a sequence on a ring; the whole micro-batch when local) and the head's per-token
// cost of the member's tokens; each of the D-1 ring steps exposes max(0, kv transfer of the rank's
// tokens - that step's attention sum a1 (s/D)^2). `contention` in [0, 1]: the share of the other
// ranks' time that their own items (local passes or other rings) take while the ring runs; the cost
// is that mix of the cost file's contended and plain pass calibrations. Both parts are then
// times the model's online refit factor of the ring size (CostModel::scale, 1 without one).
// An item with offload ratio r > 0 (Eq. 3) computes CostModel::OffloadComputeFactor(r) times
// its layers' time.
ItemCost RingCost(const CostModel& cost, const std::vector<int64_t>& lengths, int ring_size,
                  double contention = 0, double offload_ratio = 0);
ItemCost SequenceRingCost(const CostModel& cost, int64_t length, int ring_size,
                          double offload_ratio = 0);

struct Plan {
  std::string planner;
  int64_t capacity = 0;
  int num_ranks = 0;
  std::vector<int64_t> lengths;  // the global batch; sequence id = index
  std::vector<WorkItem> items;   // in the global ring order (placement order)
  double lower_bound_ms = 0;
};

struct StepMetrics {
  double step_ms = 0;
  double busy_fraction = 0;          // mean over ranks of busy time / step time
  double exposed_comm_fraction = 0;  // exposed ring transfer / busy time, all ranks
};

// Replays the plan in its global order under `cost`, sets every item's start_ms and
// duration_ms, and returns the step's metrics. Where the cost file has contended calibrations,
// a first replay finds how much work on other ranks overlaps each ring item, and a second
// replay costs each ring item with that contention.
StepMetrics Simulate(const CostModel& cost, Plan& plan);

// Token ranges [begin, end) held by ring position `position` of `ring_size` (two zigzag chunks;
// one range when ring_size == 1). `padded`: chunk size is ceil(s / 2D) (static mesh layout).
std::vector<std::pair<int64_t, int64_t>> ZigzagRanges(int64_t length, int ring_size, int position,
                                                      bool padded);

proto::StepPlan ToStepPlan(const CostModel& cost, const Plan& plan, uint64_t step);

}  // namespace seqmesh::scheduler
