// training.nonfinite (issue 13, item 6): what a step whose global gradient norm is not finite (a
// NaN or infinite loss or gradient) does to the run. The step's update is skipped already
// (GradSync never applies one: parameters, moments and the optimizer's step count stay); this
// decides whether the run goes on. "stop" ends it at the first such step; "skip" counts them and
// ends the run after training.nonfinite_limit in a row. `train` and the coordinator apply it to
// every step; the metrics record of a skipped step says so ("skipped": true).
#pragma once

#include <cstdint>

#include "runtime/run_config.h"

namespace seqmesh::launch {

class NonFiniteGuard {
 public:
  explicit NonFiniteGuard(const TrainingConfig& training)
      : policy_(training.nonfinite), limit_(training.nonfinite_limit) {}
  // After `step` (steps completed, 1-based) with the step's loss and global gradient norm:
  // false for a finite step, true for a skipped one the run goes on after; throws seqmesh::Error
  // naming the step, the values and the fix when the run must stop.
  bool Check(uint64_t step, double loss, double grad_norm);
  int64_t skipped() const { return skipped_; }  // all skipped steps so far

 private:
  NonFinitePolicy policy_;
  int64_t limit_;
  int64_t in_a_row_ = 0, skipped_ = 0;
};

}  // namespace seqmesh::launch
