#include "scheduler/packed_plan.h"

#include <algorithm>
#include <limits>

#include "runtime/batch_sampler.h"
#include "runtime/check.h"

namespace seqmesh::scheduler {

PackedPlan PlanPacked(const CostModel& cost, const std::vector<int64_t>& lengths, int64_t capacity,
                      int num_ranks, uint64_t step) {
  SM_CHECK(num_ranks >= 1) << "the world size must be >= 1, got " << num_ranks;
  std::vector<int64_t> ids;
  std::vector<int32_t> lens;
  for (size_t i = 0; i < lengths.size(); ++i) {
    SM_CHECK(lengths[i] >= 0 && lengths[i] <= std::numeric_limits<int32_t>::max())
        << "sequence " << i << " has " << lengths[i] << " tokens";
    ids.push_back(static_cast<int64_t>(i));
    lens.push_back(static_cast<int32_t>(lengths[i]));
  }
  const PackResult packed = PackMicroBatches(ids, lens, capacity);

  PackedPlan out;
  out.cut_sequences = packed.cut_sequences;
  Plan& p = out.pieces;
  p.planner = "packed";
  p.capacity = capacity;
  p.num_ranks = num_ranks;
  for (size_t m = 0; m < packed.micro_batches.size(); ++m) {
    WorkItem item;
    item.ring = {static_cast<int32_t>(m % num_ranks)};
    for (const PackedPiece& piece : packed.micro_batches[m].pieces) {
      item.sequences.push_back(static_cast<int32_t>(p.lengths.size()));
      p.lengths.push_back(piece.length);
    }
    p.items.push_back(std::move(item));
  }
  Simulate(cost, p);

  proto::StepPlan& wire = out.plan;
  wire.set_step(step);
  wire.set_capacity(capacity);
  wire.set_num_ranks(num_ranks);
  wire.set_layers_per_rank(cost.layers_per_rank);
  wire.set_planner(p.planner);
  for (size_t i = 0; i < lengths.size(); ++i) {
    auto* s = wire.add_sequences();
    s->set_id(i);
    s->set_length(lengths[i]);
  }
  for (int r = 0; r < num_ranks; ++r) wire.add_ranks()->set_rank(r);
  double step_ms = 0;
  for (size_t m = 0; m < packed.micro_batches.size(); ++m) {
    const WorkItem& item = p.items[m];
    auto* mb = wire.mutable_ranks(item.ring[0])->add_micro_batches();
    mb->set_estimated_start_ms(item.start_ms);
    mb->set_estimated_duration_ms(item.duration_ms);
    step_ms = std::max(step_ms, item.start_ms + item.duration_ms);
    for (const PackedPiece& piece : packed.micro_batches[m].pieces) {
      auto* seg = mb->add_segments();
      seg->set_sequence_id(static_cast<uint64_t>(piece.id));
      seg->set_restart_positions(piece.length < lengths[piece.id]);
      auto* r = seg->add_ranges();
      r->set_begin(static_cast<uint64_t>(piece.begin));
      r->set_end(static_cast<uint64_t>(piece.begin + piece.length));
    }
  }
  wire.set_estimated_step_ms(step_ms + cost.step_fixed_ms);
  return out;
}

}  // namespace seqmesh::scheduler
