#include "launch/validation.h"

#include <algorithm>
#include <cmath>

#include "runtime/check.h"

namespace seqmesh::launch {

ValidationSet ChooseValidationSet(const TrainingData& data) {
  constexpr int64_t kValidationTokens = 1 << 16;
  ValidationSet set;
  int64_t tokens = 0;
  for (size_t k = 0; k < data.validation.size() && tokens < kValidationTokens; ++k) {
    const BlendedId& id = data.validation[k];
    const int64_t len = data.datasets[id.dataset].Length(id.sequence);
    set.ids.push_back(id);
    set.lengths.push_back(len);
    set.target_tokens += data.TrainedTargets(id);
    tokens += len;
  }
  return set;
}

TokenReader BatchTokenReader(const TrainingData& data, const std::vector<BlendedId>& batch) {
  TokenReader::Tokens tokens = [&data, &batch](uint64_t seq, int64_t begin, int64_t end,
                                               std::vector<int32_t>& out) {
    SM_CHECK(seq < batch.size()) << "the plan names sequence " << seq << " of a batch of "
                                 << batch.size();
    const BlendedId& id = batch[seq];
    data.datasets[id.dataset].ReadRange(id.sequence, begin, end - begin, out);
  };
  if (!data.has_masks()) return tokens;
  return TokenReader(std::move(tokens), [&data, &batch](uint64_t seq, int64_t begin, int64_t end,
                                                        std::vector<uint8_t>& out) {
    data.ReadTrained(batch[seq].dataset, batch[seq].sequence, begin, end - begin, out);
  });
}

double ValidationLoss(HdpStep& hdp, Communicator& comm, const ValidationSet& set,
                      const TrainingData& data, const scheduler::CostModel& cost,
                      const scheduler::StepPlannerOptions& options) {
  if (set.empty() || set.target_tokens == 0) return std::nan("");
  SM_CHECK(options.num_ranks == comm.size())
      << "validation planned for " << options.num_ranks << " ranks on a world of " << comm.size();
  const proto::StepPlan plan = scheduler::PlanFixedBatch(cost, options, set.lengths, 0);
  const double mine = hdp.Evaluate(plan, set.target_tokens, BatchTokenReader(data, set.ids));
  return comm.AllReduceScalar(mine);
}

}  // namespace seqmesh::launch
