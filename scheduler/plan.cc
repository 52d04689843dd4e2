#include "scheduler/plan.h"

#include <algorithm>

#include "runtime/check.h"

namespace seqmesh::scheduler {

ItemCost RingCost(const CostModel& cost, const std::vector<int64_t>& lengths, int ring_size) {
  const double d = ring_size;
  double compute = 0, step_attention = 0, tokens_per_rank = 0;
  for (int64_t s : lengths) {
    compute += cost.LayerMs(static_cast<double>(s)) / d;
    double c = s / d;
    step_attention += cost.a1 * c * c;
    tokens_per_rank += c;
  }
  double exposed = 0;
  if (ring_size > 1) {
    exposed = (d - 1) * std::max(0.0, cost.KvTransferMs(tokens_per_rank) - step_attention);
  }
  const double l = cost.layers_per_rank;
  return {compute * l, exposed * l};
}

ItemCost SequenceRingCost(const CostModel& cost, int64_t length, int ring_size) {
  const double d = ring_size, c = length / d;
  ItemCost r;
  r.compute_ms = cost.LayerMs(static_cast<double>(length)) / d * cost.layers_per_rank;
  if (ring_size > 1)
    r.exposed_ms =
        (d - 1) * std::max(0.0, cost.KvTransferMs(c) - cost.a1 * c * c) * cost.layers_per_rank;
  return r;
}

StepMetrics Simulate(const CostModel& cost, Plan& plan) {
  std::vector<double> ready(plan.num_ranks, 0.0);
  double busy = 0, exposed = 0;
  std::vector<int64_t> lengths;
  for (WorkItem& item : plan.items) {
    lengths.clear();
    for (int32_t s : item.sequences) lengths.push_back(plan.lengths[s]);
    ItemCost c = RingCost(cost, lengths, static_cast<int>(item.ring.size()));
    double start = 0;
    for (int32_t r : item.ring) start = std::max(start, ready[r]);
    for (int32_t r : item.ring) ready[r] = start + c.total();
    item.start_ms = start;
    busy += c.total() * item.ring.size();
    exposed += c.exposed_ms * item.ring.size();
  }
  StepMetrics m;
  m.step_ms = plan.num_ranks ? *std::max_element(ready.begin(), ready.end()) : 0;
  if (m.step_ms > 0) m.busy_fraction = busy / (m.step_ms * plan.num_ranks);
  if (busy > 0) m.exposed_comm_fraction = exposed / busy;
  return m;
}

std::vector<std::pair<int64_t, int64_t>> ZigzagRanges(int64_t s, int d, int p, bool padded) {
  if (d == 1) return {{0, s}};
  const int64_t chunks = 2 * static_cast<int64_t>(d);
  auto bound = [&](int64_t k) -> int64_t {
    if (padded) return std::min(s, k * ((s + chunks - 1) / chunks));
    // The first s % 2D chunks hold one token more: exactly parallel's ZigzagLayout, which the
    // workers run (they check the plan's ranges against it).
    return k * (s / chunks) + std::min(k, s % chunks);
  };
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t k : {static_cast<int64_t>(p), chunks - 1 - p}) {
    int64_t b = bound(k), e = bound(k + 1);
    if (e > b) out.push_back({b, e});
  }
  return out;
}

proto::StepPlan ToStepPlan(const CostModel& cost, const Plan& plan, uint64_t step) {
  proto::StepPlan out;
  out.set_step(step);
  out.set_capacity(plan.capacity);
  out.set_num_ranks(plan.num_ranks);
  out.set_layers_per_rank(cost.layers_per_rank);
  out.set_planner(plan.planner);
  out.set_lower_bound_ms(plan.lower_bound_ms);
  for (size_t i = 0; i < plan.lengths.size(); ++i) {
    auto* s = out.add_sequences();
    s->set_id(i);
    s->set_length(plan.lengths[i]);
  }
  for (int r = 0; r < plan.num_ranks; ++r) out.add_ranks()->set_rank(r);
  uint64_t ring_id = 0;
  std::vector<int64_t> lengths;
  double step_ms = 0;
  for (const WorkItem& item : plan.items) {
    const int d = static_cast<int>(item.ring.size());
    lengths.clear();
    for (int32_t s : item.sequences) lengths.push_back(plan.lengths[s]);
    double duration = RingCost(cost, lengths, d).total();
    step_ms = std::max(step_ms, item.start_ms + duration);
    if (d > 1) {
      auto* op = out.add_ring_order();
      op->set_ring_id(ring_id);
      for (int32_t r : item.ring) op->add_ranks(r);
    }
    for (int p = 0; p < d; ++p) {
      auto* mb = out.mutable_ranks(item.ring[p])->add_micro_batches();
      if (d > 1) {
        for (int32_t r : item.ring) mb->add_ring(r);
        mb->set_ring_position(p);
        mb->set_ring_id(ring_id);
      }
      mb->set_offload_ratio(item.offload_ratio);
      mb->set_estimated_start_ms(item.start_ms);
      mb->set_estimated_duration_ms(duration);
      for (int32_t s : item.sequences) {
        // The wire plan always carries the unpadded zigzag chunks, which the workers' ring
        // attention runs (it needs no padding); a padded item (static mesh) keeps its padded
        // packing and cost, and each of its chunks is at most the padded one.
        auto ranges = ZigzagRanges(plan.lengths[s], d, p, /*padded=*/false);
        if (ranges.empty()) continue;
        auto* seg = mb->add_segments();
        seg->set_sequence_id(s);
        for (auto [b, e] : ranges) {
          auto* tr = seg->add_ranges();
          tr->set_begin(b);
          tr->set_end(e);
        }
      }
    }
    if (d > 1) ++ring_id;
  }
  out.set_estimated_step_ms(step_ms);
  return out;
}

}  // namespace seqmesh::scheduler
