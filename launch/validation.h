// Validation (training.eval_interval), one way for `seqmesh train` and for every rank of a job:
// the same held-out sequences at every evaluation, planned as a step of the job is
// (scheduler::PlanFixedBatch: packed for a world of one, the configured planner with rings for N
// ranks, so a long sequence keeps its whole context); each rank runs forward on its part and the
// shares are summed over all ranks. A world of one sums them in pack order, as the trainer
// always did.
#pragma once

#include <cstdint>
#include <vector>

#include "launch/training_data.h"
#include "parallel/communicator.h"
#include "parallel/hdp_step.h"
#include "scheduler/cost_model.h"
#include "scheduler/step_planner.h"

namespace seqmesh::launch {

struct ValidationSet {
  std::vector<BlendedId> ids;  // the first held-out sequences, up to about 64K tokens
  std::vector<int64_t> lengths;
  uint64_t target_tokens = 0;  // the loss normalizer
  bool empty() const { return ids.empty(); }
};
ValidationSet ChooseValidationSet(const TrainingData& data);

// The loss of `hdp`'s model on the set (NaN when it is empty). Every rank of `comm` calls it and
// gets the sum; `capacity` is training.micro_batch_tokens.
double ValidationLoss(HdpStep& hdp, Communicator& comm, const ValidationSet& set,
                      const TrainingData& data, const scheduler::CostModel& cost,
                      const scheduler::StepPlannerOptions& options);

// Reads the tokens, and the loss mask where the dataset has one, of the plan's sequence `seq`,
// which is `batch[seq]` of the datasets: the TokenReader of a batch drawn in this process.
TokenReader BatchTokenReader(const TrainingData& data, const std::vector<BlendedId>& batch);

}  // namespace seqmesh::launch
