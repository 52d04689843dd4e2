// StepPlanner: what every rank runs at step k (DESIGN.md section 3, steps 1 and 2), pure: no
// gRPC, no files, no threads. It draws step k's global batch with the run's sampler (seed,
// dataset lengths and the cursor after step k-1), plans it with the configured planner, validates
// the plan, predicts the step's time with the online refit, and learns the refit from the steps
// the ranks reported. The coordinator process serves its plans; it keeps the ranks, liveness,
// the step window and the commits.
//
// Invariants:
//   - plans are drawn once each, in step order; the cursor after step k is what a checkpoint
//     after step k stores, so a planner restarted there draws the same batches;
//   - with RefitMode::kPredict or kOff a plan depends on (config, cost file, cursor, k) alone,
//     so a restarted job plans every step exactly as before; kPlan plans with the refit too;
//   - a plan that fails validation is an internal error (thrown), never served.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/step_plan.pb.h"
#include "runtime/batch_sampler.h"
#include "runtime/run_config.h"
#include "scheduler/cost_model.h"
#include "scheduler/plan.h"
#include "scheduler/planner.h"
#include "scheduler/refit.h"

namespace seqmesh::scheduler {

struct StepPlannerOptions {
  int num_ranks = 0;
  int64_t capacity = 0;  // C: tokens of one rank's micro-batch
  int64_t context = 0;   // the static mesh's pack length; 0: the batch's longest (>= C)
  PlannerKind planner = PlannerKind::kBalanced;
  RefitMode refit = RefitMode::kPredict;
  // distributed.offload: Eq. 3 shrinks long sequences' rings (PlannerOptions::offload), the
  // overlap condition at the SSD's bandwidths (the cost file's ssd_*_gbps) when the activations
  // go to nvme, else at its d2h/h2d.
  bool offload = false;
  bool offload_to_ssd = false;

  // From the run's config (training.micro_batch_tokens, distributed.*).
  static StepPlannerOptions FromConfig(const RunConfig& config, int num_ranks);
};

// The cost model the planner uses: distributed.cost if set (read from its file), else a built-in
// CPU model whose coefficients follow the model's shape (FLOPs and bytes per token) at an
// assumed rate; the built-in one has the right shape, not measured values: pass a
// `seqmesh profile` file for plans balanced on this machine's real costs.
CostModel PlannerCostModel(const RunConfig& config);

// One planned step, each field with one meaning whatever the refit mode.
struct PlannedStep {
  uint64_t step = 0;
  std::vector<BlendedId> batch;  // the global batch in draw order: plan sequence i is batch[i]
  std::vector<int64_t> lengths;  // tokens of each batch sequence
  int64_t tokens = 0;            // sum of lengths
  uint64_t target_tokens = 0;    // next-token targets in the batch (the loss normalizer)
  // What the ranks run; its estimated_step_ms is the estimate of the model it was planned with
  // (the cost file's, or the refit's with RefitMode::kPlan).
  proto::StepPlan plan;
  // The plan's items with durations under the cost file alone: what the refit measures against.
  Plan items;
  // The step time predicted with the refit learned from the steps reported before this one was
  // planned (the cost file's estimate when nothing was learned, or the refit is off).
  double predicted_ms = 0;
  BlendCursor cursor_after;  // the sampler's cursor after this step's batch
  // A world of one: sequences longer than the capacity, cut into pieces (scheduler/packed_plan.h).
  int64_t cut_sequences = 0;
};

// The plan of a fixed batch as a step with `options` is planned, without the refit: the packed
// plan for one rank, the configured planner for N (validation, whose batch is the same at every
// evaluation). Throws like StepPlanner::Next when a sequence needs more ranks than there are.
proto::StepPlan PlanFixedBatch(const CostModel& cost, const StepPlannerOptions& options,
                               const std::vector<int64_t>& lengths, uint64_t step);

class StepPlanner {
 public:
  // `sampler` draws the batches (its lengths are the datasets'); `dataset_names` name the
  // datasets in errors. Planning starts at `first_step` with `cursor` (a checkpoint's, or
  // sampler.Start()). `trained_targets[d][s]`, where dataset d has a loss mask, is the number
  // of next-token targets sequence s trains (the loss normalizer counts only those); a dataset
  // without one (an empty vector, or none given) trains length - 1.
  StepPlanner(CostModel cost, StepPlannerOptions options, BlendedBatchSampler sampler,
              std::vector<std::string> dataset_names, uint64_t first_step, BlendCursor cursor,
              std::vector<std::vector<int32_t>> trained_targets = {});
  // The planner's options for a batch whose longest sequence has `longest` tokens.
  static PlannerOptions PlannerOptionsFor(const StepPlannerOptions& options, const CostModel& cost,
                                          int64_t longest);

  // Draws and plans the next step: with one rank the packed plan (long sequences cut, never an
  // error), with N the configured planner. Throws seqmesh::Error naming the sequence when a
  // sequence needs more ranks than the job has, or an internal error when the plan is invalid.
  PlannedStep Next();
  uint64_t next_step() const { return next_step_; }

  // The ranks' times of a planned step: times[rank][m] for the rank's m-th micro-batch (missing
  // where not reported), and the time the slowest rank spent beside its passes.
  void Learn(const PlannedStep& step,
             const std::vector<std::vector<std::optional<MicroBatchTime>>>& times, double fixed_ms);
  // The cost file with what was learned (the refit's scale_<D> factors and step_fixed_ms).
  CostModel Refitted() const;
  std::map<int, double> RefitScales() const { return refit_.Scales(); }
  const CostModel& cost() const { return cost_; }
  const StepPlannerOptions& options() const { return options_; }

 private:
  CostModel cost_;
  StepPlannerOptions options_;
  BlendedBatchSampler sampler_;
  std::vector<std::string> dataset_names_;
  std::vector<std::vector<int32_t>> trained_targets_;
  uint64_t next_step_;
  BlendCursor cursor_;
  Refit refit_;
};

}  // namespace seqmesh::scheduler
