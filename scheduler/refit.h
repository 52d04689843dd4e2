// Online refit of the cost model from the job's own measured passes (docs/PLANNER.md, "Online
// refit").
//
// A profile measures passes in its own arrangement; a job runs other arrangements, and on
// shared cores its rings of 2 and 3 ranks ran 1.3-1.6x what the profile measured in the same
// arrangement (BENCHMARKS.md, "HDP end to end"). The coordinator therefore learns, per ring size
// D, the ratio of the measured time of each plan item to the cost file's estimate of it, and per
// step the time beside the passes (gradient sync, AdamW, plan fetch). Refit::Apply gives the
// cost file with those factors: the coordinator's prediction of a step uses only steps that
// finished before the step was planned.
//
// Each factor is exp(median(log ratio)) over a sliding window: one descheduled pass cannot move
// it, and a change of regime (other rings beside it) shows within a window.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "scheduler/cost_model.h"
#include "scheduler/plan.h"

namespace seqmesh::scheduler {

// When one rank ran one of its micro-batches: from the start of its first pass to the end of its
// last, ms from any per-rank origin (only differences are used).
struct MicroBatchTime {
  double start_ms = 0;
  double end_ms = 0;
};

class Refit {
 public:
  // `window`: samples kept per ring size (and for the fixed time); `min_samples`: fewer give no
  // factor (1, and the file's step_fixed_ms).
  explicit Refit(int window = 64, int min_samples = 3);

  // One item of ring size `ring_size` took `measured_ms`; the cost file estimated
  // `estimated_ms`. Non-finite or non-positive values are ignored.
  void AddItem(int ring_size, double measured_ms, double estimated_ms);
  // A step took `ms` beside its passes.
  void AddFixed(double ms);
  // Every item of `plan`, whose durations Simulate set under the cost file, against
  // times[rank][m]: rank's m-th micro-batch in ToStepPlan's layout (MicroBatchItems). A ring
  // item counts its shortest member: the one that arrived last and waited least for the others.
  // Items with a member missing are skipped.
  void AddStep(const Plan& plan,
               const std::vector<std::vector<std::optional<MicroBatchTime>>>& times);

  double Scale(int ring_size) const;
  std::map<int, double> Scales() const;  // every ring size with enough samples
  std::optional<double> FixedMs() const;
  // `base` (the model the estimates came from) with each CostModel::scale multiplied by
  // Scales()'s factor and step_fixed_ms replaced by FixedMs().
  CostModel Apply(const CostModel& base) const;

 private:
  int window_, min_samples_;
  std::map<int, std::deque<double>> log_ratio_;
  std::deque<double> fixed_;
};

// Per rank, the index into plan.items of each of its micro-batches, in the order ToStepPlan
// lists them (items in order; each member appends one).
std::vector<std::vector<int>> MicroBatchItems(const Plan& plan);

}  // namespace seqmesh::scheduler
