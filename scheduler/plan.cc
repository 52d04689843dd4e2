#include "scheduler/plan.h"

#include <algorithm>

#include "runtime/check.h"

namespace seqmesh::scheduler {

ItemCost RingCost(const CostModel& cost, const std::vector<int64_t>& lengths, int ring_size,
                  double contention, double offload_ratio) {
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
  // One pass per sequence on a ring; a local micro-batch is one pass of all its sequences.
  const CostModel::PassCalibration plain = cost.Pass(ring_size);
  const CostModel::PassCalibration busy = cost.ContendedPass(ring_size);
  const double w = ring_size > 1 ? std::clamp(contention, 0.0, 1.0) : 0.0;
  const double factor = (1 - w) * plain.factor + w * busy.factor;
  const double pass_ms = (1 - w) * plain.ms + w * busy.ms;
  const double passes = ring_size > 1 ? static_cast<double>(lengths.size()) : 1.0;
  const double k = cost.Scale(ring_size);
  const double layers = compute * l * factor * cost.OffloadComputeFactor(offload_ratio);
  return {k * (layers + pass_ms * passes + cost.head_ms_per_token * tokens_per_rank),
          k * exposed * l};
}

ItemCost SequenceRingCost(const CostModel& cost, int64_t length, int ring_size,
                          double offload_ratio) {
  const double d = ring_size, c = length / d;
  ItemCost r;
  const CostModel::PassCalibration pass = cost.Pass(ring_size);
  const double k = cost.Scale(ring_size);
  r.compute_ms = k * (cost.LayerMs(static_cast<double>(length)) / d * cost.layers_per_rank *
                          pass.factor * cost.OffloadComputeFactor(offload_ratio) +
                      pass.ms + cost.head_ms_per_token * c);
  if (ring_size > 1)
    r.exposed_ms =
        k * (d - 1) * std::max(0.0, cost.KvTransferMs(c) - cost.a1 * c * c) * cost.layers_per_rank;
  return r;
}

namespace {

// Per ring item, the share of the other ranks' time within the item's interval that their own
// items take (items' start_ms and duration_ms from a replay): local passes and other rings
// alike, since both compete for shared cores (job traces: a ring of 2 beside another ring of 2,
// costed as if beside idle ranks, ran 1.8-4x its estimate). A ring's members run nothing else
// while it runs, so that is the integral over the interval of how many ranks are in an item: a
// step function over the items' sorted starts and ends, with prefix integrals.
std::vector<double> Contention(const Plan& plan) {
  std::vector<std::pair<double, int>> events;  // (time, +members at a start / -members at an end)
  for (const WorkItem& o : plan.items) {
    if (o.duration_ms <= 0) continue;
    const int members = static_cast<int>(o.ring.size());
    events.push_back({o.start_ms, +members});
    events.push_back({o.start_ms + o.duration_ms, -members});
  }
  std::sort(events.begin(), events.end());
  std::vector<double> times, integral;  // integral of the count from 0 up to times[k]
  std::vector<int> count;               // the count from times[k] on
  int now = 0;
  double area = 0;
  for (const auto& [t, delta] : events) {
    if (!times.empty()) area += now * (t - times.back());
    now += delta;
    times.push_back(t);
    integral.push_back(area);
    count.push_back(now);
  }
  auto area_to = [&](double t) {  // integral of the count over [0, t]
    auto it = std::upper_bound(times.begin(), times.end(), t);
    if (it == times.begin()) return 0.0;
    const size_t k = static_cast<size_t>(it - times.begin()) - 1;
    return integral[k] + count[k] * (t - times[k]);
  };
  std::vector<double> out(plan.items.size(), 0.0);
  for (size_t i = 0; i < plan.items.size(); ++i) {
    const WorkItem& a = plan.items[i];
    const int d = static_cast<int>(a.ring.size());
    if (d <= 1 || d >= plan.num_ranks || a.duration_ms <= 0) continue;
    // Less the ring's own members, in it for the whole interval.
    const double overlap =
        area_to(a.start_ms + a.duration_ms) - area_to(a.start_ms) - d * a.duration_ms;
    out[i] = std::clamp(overlap / ((plan.num_ranks - d) * a.duration_ms), 0.0, 1.0);
  }
  return out;
}

}  // namespace

StepMetrics Simulate(const CostModel& cost, Plan& plan) {
  std::vector<double> ready;
  double busy = 0, exposed = 0;
  std::vector<int64_t> lengths;
  std::vector<double> contention(plan.items.size(), 0.0);
  const int replays = cost.contended_pass.empty() ? 1 : 2;
  for (int replay = 0; replay < replays; ++replay) {
    if (replay > 0) contention = Contention(plan);
    ready.assign(plan.num_ranks, 0.0);
    busy = exposed = 0;
    for (size_t i = 0; i < plan.items.size(); ++i) {
      WorkItem& item = plan.items[i];
      lengths.clear();
      for (int32_t s : item.sequences) lengths.push_back(plan.lengths[s]);
      ItemCost c = RingCost(cost, lengths, static_cast<int>(item.ring.size()), contention[i],
                            item.offload_ratio);
      double start = 0;
      for (int32_t r : item.ring) start = std::max(start, ready[r]);
      for (int32_t r : item.ring) ready[r] = start + c.total();
      item.start_ms = start;
      item.duration_ms = c.total();
      busy += c.total() * item.ring.size();
      exposed += c.exposed_ms * item.ring.size();
    }
  }
  StepMetrics m;
  m.step_ms = plan.num_ranks ? *std::max_element(ready.begin(), ready.end()) : 0;
  const double passes_ms = m.step_ms;
  m.step_ms += cost.step_fixed_ms;
  if (passes_ms > 0) m.busy_fraction = busy / (passes_ms * plan.num_ranks);
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
    // Simulate's duration (with contention) where the plan was replayed.
    double duration = item.duration_ms > 0
                          ? item.duration_ms
                          : RingCost(cost, lengths, d, 0, item.offload_ratio).total();
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
  out.set_estimated_step_ms(step_ms + cost.step_fixed_ms);
  return out;
}

}  // namespace seqmesh::scheduler
