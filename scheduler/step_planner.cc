#include "scheduler/step_planner.h"

#include <algorithm>
#include <sstream>
#include <utility>

#include "runtime/check.h"
#include "scheduler/packed_plan.h"
#include "scheduler/plan_validator.h"
#include "scheduler/planner.h"

namespace seqmesh::scheduler {

CostModel PlannerCostModel(const RunConfig& config) {
  if (!config.distributed.cost.empty()) return LoadCostModel(config.distributed.cost);
  // The shape of T(s) and Act(s) for this model in fp32 at an assumed 20 GFLOP/s per rank (a
  // couple of cores): b1 from 6 FLOPs per matmul parameter and token (forward + backward), a1
  // from causal attention's 12 * hidden FLOPs per (query, key) pair over s^2 / 2 pairs. Only
  // the ratios matter for balance; `seqmesh profile` measures the real ones.
  const ModelConfig& m = config.model;
  constexpr double kAssumedGflops = 20;
  const double kv = static_cast<double>(m.kv_heads * m.head_dim());
  const double h = static_cast<double>(m.hidden);
  const double layer_params = h * (2 * h + 2 * kv) + 3 * h * static_cast<double>(m.ffn);
  CostModel c;
  c.name = "built-in-cpu";
  c.layers_per_rank = static_cast<int>(m.layers);
  c.b1 = 6 * layer_params / (kAssumedGflops * 1e6);
  c.a1 = 6 * h / (kAssumedGflops * 1e6);
  c.g = 0.01;
  // Saved fp32 tensors per token and layer: norms, q, k, v, attention out, the FFN's three.
  c.a2 = 4 * (6 * h + 2 * kv + 3 * static_cast<double>(m.ffn));
  c.b2 = 0;
  // K and V forward, K, V, dK, dV backward, fp32.
  c.kv_bytes_per_token = 6 * kv * 4;
  c.p2p_gbps = 5;  // shared memory between processes of one machine
  c.d2h_gbps = 10;
  c.h2d_gbps = 10;
  return c;
}

StepPlannerOptions StepPlannerOptions::FromConfig(const RunConfig& config, int num_ranks) {
  StepPlannerOptions o;
  o.num_ranks = num_ranks;
  o.capacity = config.training.micro_batch_tokens;
  o.context = config.distributed.context;
  o.planner = config.distributed.planner;
  o.refit = config.distributed.refit;
  o.offload = config.distributed.offload;
  o.offload_to_ssd = config.offload.activations == OffloadDevice::kNvme;
  return o;
}

StepPlanner::StepPlanner(CostModel cost, StepPlannerOptions options, BlendedBatchSampler sampler,
                         std::vector<std::string> dataset_names, uint64_t first_step,
                         BlendCursor cursor, std::vector<std::vector<int32_t>> trained_targets)
    : cost_(std::move(cost)),
      options_(options),
      sampler_(std::move(sampler)),
      dataset_names_(std::move(dataset_names)),
      trained_targets_(std::move(trained_targets)),
      next_step_(first_step),
      cursor_(std::move(cursor)) {
  SM_CHECK(options_.num_ranks >= 1) << "the world size must be >= 1, got " << options_.num_ranks;
  SM_CHECK(options_.capacity >= 1)
      << "the micro-batch capacity must be >= 1, got " << options_.capacity;
  if (options_.offload && options_.offload_to_ssd)
    SM_CHECK(cost_.ssd_write_gbps > 0 && cost_.ssd_read_gbps > 0)
        << "distributed.offload with offload.activations = \"nvme\" needs the SSD's bandwidths "
           "for the overlap condition: the cost model has no ssd_write_gbps / ssd_read_gbps "
           "(seqmesh profile measures them with this config)";
}

namespace {
double OffloadGbps(const StepPlannerOptions& o, const CostModel& cost) {
  return o.offload && o.offload_to_ssd ? std::min(cost.ssd_write_gbps, cost.ssd_read_gbps) : 0;
}
}  // namespace

PlannerOptions StepPlanner::PlannerOptionsFor(const StepPlannerOptions& o, const CostModel& cost,
                                              int64_t longest) {
  PlannerOptions po;
  po.num_ranks = o.num_ranks;
  po.capacity = o.capacity;
  po.context = o.context > 0 ? o.context : std::max(o.capacity, longest);
  po.offload = o.offload;
  po.offload_gbps = OffloadGbps(o, cost);
  return po;
}

PlannedStep StepPlanner::Next() {
  PlannedStep out;
  out.step = next_step_;
  out.batch = sampler_.Next(cursor_);
  out.cursor_after = cursor_;
  const int n = options_.num_ranks;
  const int64_t capacity = options_.capacity;
  int64_t longest = 0;
  for (const BlendedId& id : out.batch) {
    const int64_t len = sampler_.Length(id);
    // A world of one cuts long sequences (PlanPacked); N ranks ring them.
    // With distributed.offload a sequence may run on fewer ranks than its length over C.
    const int d =
        n == 1 ? 1
               : ShardSequence(cost_, len, capacity, options_.offload, OffloadGbps(options_, cost_))
                     .ring_size;
    const std::string name = static_cast<size_t>(id.dataset) < dataset_names_.size()
                                 ? dataset_names_[id.dataset]
                                 : std::to_string(id.dataset);
    SM_CHECK(d <= n) << "sequence " << id.sequence << " of dataset '" << name << "' has " << len
                     << " tokens and needs " << d << " ranks of capacity " << capacity
                     << " (training.micro_batch_tokens); the job has " << n
                     << " ranks (at most about " << n * capacity << " tokens per sequence)";
    out.lengths.push_back(len);
    const bool masked = static_cast<size_t>(id.dataset) < trained_targets_.size() &&
                        !trained_targets_[id.dataset].empty();
    out.target_tokens += masked ? static_cast<uint64_t>(trained_targets_[id.dataset][id.sequence])
                                : static_cast<uint64_t>(std::max<int64_t>(0, len - 1));
    longest = std::max(longest, len);
    out.tokens += len;
  }
  const PlannerOptions po = PlannerOptionsFor(options_, cost_, longest);
  // The refit holds what the steps reported so far measured. kPlan plans with it; otherwise it
  // only predicts, and plans depend on the cost file alone.
  const RefitMode mode = options_.refit;
  const CostModel fitted = mode == RefitMode::kOff ? CostModel{} : refit_.Apply(cost_);
  const CostModel& planning = mode == RefitMode::kPlan ? fitted : cost_;
  if (n == 1) {
    PackedPlan packed = PlanPacked(planning, out.lengths, capacity, 1, out.step);
    out.predicted_ms = packed.plan.estimated_step_ms();  // Simulate's, with the fixed time
    out.plan = std::move(packed.plan);
    out.items = std::move(packed.pieces);
    out.cut_sequences = packed.cut_sequences;
  } else {
    Plan plan = PlanWith(options_.planner, planning, out.lengths, po);
    out.predicted_ms = Simulate(planning, plan).step_ms;  // kOff; kPlan: the refit's replay
    out.plan = ToStepPlan(planning, plan, out.step);
    out.items = std::move(plan);
  }
  if (mode == RefitMode::kPlan) Simulate(cost_, out.items);  // the file's durations
  if (mode == RefitMode::kPredict) {
    Plan predicted = out.items;
    out.predicted_ms = Simulate(fitted, predicted).step_ms;
  }
  const std::vector<std::string> errors = ValidateStepPlan(out.plan);
  if (!errors.empty()) {
    std::ostringstream all;
    for (const std::string& e : errors) all << "\n  " << e;
    SM_CHECK(false) << "internal error: the " << Name(options_.planner)
                    << " planner's plan for step " << out.step << " is invalid:" << all.str();
  }
  ++next_step_;
  return out;
}

proto::StepPlan PlanFixedBatch(const CostModel& cost, const StepPlannerOptions& options,
                               const std::vector<int64_t>& lengths, uint64_t step) {
  if (options.num_ranks == 1) return PlanPacked(cost, lengths, options.capacity, 1, step).plan;
  int64_t longest = 0;
  for (int64_t len : lengths) {
    const int d =
        ShardSequence(cost, len, options.capacity, options.offload, OffloadGbps(options, cost))
            .ring_size;
    SM_CHECK(d <= options.num_ranks)
        << "a sequence of " << len << " tokens needs " << d << " ranks of capacity "
        << options.capacity << " (training.micro_batch_tokens); the job has " << options.num_ranks;
    longest = std::max(longest, len);
  }
  Plan plan = PlanWith(options.planner, cost, lengths,
                       StepPlanner::PlannerOptionsFor(options, cost, longest));
  Simulate(cost, plan);
  proto::StepPlan out = ToStepPlan(cost, plan, step);
  CheckStepPlan(out);
  return out;
}

void StepPlanner::Learn(const PlannedStep& step,
                        const std::vector<std::vector<std::optional<MicroBatchTime>>>& times,
                        double fixed_ms) {
  if (options_.refit == RefitMode::kOff) return;
  refit_.AddStep(step.items, times);
  refit_.AddFixed(fixed_ms);
}

CostModel StepPlanner::Refitted() const {
  CostModel fitted = refit_.Apply(cost_);
  fitted.name = cost_.name + "-refit";
  return fitted;
}

}  // namespace seqmesh::scheduler
