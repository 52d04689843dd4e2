#include "launch/activation_offload_setup.h"

#include <algorithm>
#include <sstream>

#include "launch/format.h"
#include "launch/preflight.h"
#include "runtime/check.h"
#include "runtime/model.h"

namespace seqmesh::launch {
namespace {

ActivationTarget TargetOf(OffloadDevice d) {
  return d == OffloadDevice::kCpu ? ActivationTarget::kHost : ActivationTarget::kSsd;
}

}  // namespace

SsdEngineOptions SsdOptions(const OffloadConfig& o) {
  SsdEngineOptions s;
  s.dir = o.nvme_path;
  s.block_bytes = static_cast<size_t>(o.block_size);
  s.queue_depth = static_cast<int>(o.queue_depth);
  return s;
}

void PrepareOffloadCost(const RunConfig& config, scheduler::CostModel& cost, std::ostream& log) {
  if (!config.distributed.offload) return;
  SM_CHECK(cost.layers_per_rank == config.model.layers)
      << "distributed.offload: the cost model counts " << cost.layers_per_rank
      << " layers per rank (layers_per_rank) but model.layers is " << config.model.layers
      << "; the plan's offload ratios count the model's layers: profile this config "
         "(seqmesh profile) or fix distributed.cost";
  if (config.offload.activations != OffloadDevice::kNvme ||
      (cost.ssd_write_gbps > 0 && cost.ssd_read_gbps > 0))
    return;
  const SsdBandwidth bw = MeasureSsdBandwidth(SsdOptions(config.offload));
  cost.ssd_write_gbps = bw.write_gbps;
  cost.ssd_read_gbps = bw.read_gbps;
  log << "coordinator: SSD measured for distributed.offload (the cost model has no "
         "ssd_write_gbps/ssd_read_gbps): write "
      << Fixed(bw.write_gbps, 2) << " GB/s, read " << Fixed(bw.read_gbps, 2) << " GB/s"
      << std::endl;
}

bool ActivationSetup::offloaded() const {
  return plan_offload ||
         std::find(offload_layers.begin(), offload_layers.end(), true) != offload_layers.end();
}

ActivationPolicyInput ActivationPolicyInputFor(const RunConfig& config, int64_t max_tokens,
                                               const scheduler::CostModel& cost) {
  const ModelConfig& m = config.model;
  ActivationPolicyInput in;
  in.layers = m.layers;
  // T(s) is one layer's forward and backward; a backward is about twice its forward.
  const double t = cost.LayerMs(static_cast<double>(config.training.micro_batch_tokens));
  in.forward_ms = t / 3;
  in.backward_ms = 2 * t / 3;
  in.layer_bytes =
      static_cast<double>(Model::LayerActivationBytes(m, max_tokens, config.training.precision));
  in.input_bytes = static_cast<double>(Model::ResidualSlotBytes(m, max_tokens));
  in.offload = config.offload.activations != OffloadDevice::kNone;
  in.target = TargetOf(config.offload.activations);
  in.prefetch_depth = static_cast<int>(config.offload.prefetch_depth);
  if (in.target == ActivationTarget::kHost) {
    in.write_gbps = cost.d2h_gbps;
    in.read_gbps = cost.h2d_gbps;
  } else {
    in.write_gbps = cost.ssd_write_gbps;
    in.read_gbps = cost.ssd_read_gbps;
  }
  return in;
}

double EstimatedActivationBytes(const RunConfig& config, int64_t max_tokens) {
  if (config.distributed.offload)
    return static_cast<double>(Model::OffloadPassPoolBytes(
        config.model, config.training.micro_batch_tokens, config.training.precision));
  ActivationPolicyInput in = ActivationPolicyInputFor(config, max_tokens, scheduler::CostModel{});
  in.write_gbps = in.read_gbps = 1;  // the bytes do not depend on them
  const bool offload = config.offload.activations != OffloadDevice::kNone;
  switch (config.training.checkpoint_activations) {
    case CheckpointMode::kOff:
      return CostActivationPlaces(in, in.layers, 0).bytes;
    case CheckpointMode::kAll:
      return CostActivationPlaces(in, 0, offload ? in.layers : 0).bytes;
    case CheckpointMode::kSelective:  // budget 0: the smallest plan the policy can choose
      return ChooseActivationPlaces(in).bytes;
  }
  return 0;
}

int64_t ActivationRowsFor(const RunConfig& config) {
  const int64_t c = config.training.micro_batch_tokens;
  return config.distributed.offload ? Model::OffloadMaxPassTokens(c, config.model.layers)
                                    : Model::PassTokens(c);
}

ActivationSetup PlanActivationSetup(const RunConfig& config, int64_t max_tokens,
                                    const scheduler::CostModel& cost, int local_ranks, int rank) {
  const int64_t layers = config.model.layers;
  const OffloadDevice device = config.offload.activations;
  ActivationSetup s;
  std::ostringstream note;
  if (config.distributed.offload) {
    // The plan's ratios decide per micro-batch; the store takes every layer but the last.
    s.plan_offload = true;
    s.places.assign(layers, ActivationPlace::kOffload);
    if (layers >= 1) s.places.back() = ActivationPlace::kNone;
    const double mib = 1048576.0;
    if (rank == 0)
      s.note =
          "activations: the plan's offload ratios (distributed.offload): up to " +
          std::to_string(std::max<int64_t>(0, layers - 1)) + " of " + std::to_string(layers) +
          " layers' inputs to " + (device == OffloadDevice::kCpu ? "pinned host memory" : "SSD") +
          " per micro-batch, passes of up to " + std::to_string(max_tokens) +
          " tokens in a pool of " +
          Fixed(static_cast<double>(Model::OffloadPassPoolBytes(
                    config.model, config.training.micro_batch_tokens, config.training.precision)) /
                    mib,
                1) +
          " MiB";
    return s;
  }
  switch (config.training.checkpoint_activations) {
    case CheckpointMode::kOff:
      s.places.assign(layers, ActivationPlace::kNone);
      break;
    case CheckpointMode::kAll:
      s.places.assign(layers, device == OffloadDevice::kNone ? ActivationPlace::kRecompute
                                                             : ActivationPlace::kOffload);
      if (device != OffloadDevice::kNone)
        note << "every layer checkpointed, its input offloaded to "
             << (device == OffloadDevice::kCpu ? "pinned host memory" : "SSD");
      break;
    case CheckpointMode::kSelective: {
      ActivationPolicyInput in = ActivationPolicyInputFor(config, max_tokens, cost);
      if (in.offload && in.target == ActivationTarget::kSsd &&
          (in.write_gbps <= 0 || in.read_gbps <= 0)) {
        const SsdBandwidth bw = MeasureSsdBandwidth(SsdOptions(config.offload));
        in.write_gbps = bw.write_gbps;
        in.read_gbps = bw.read_gbps;
        note << "SSD measured (the cost file has no ssd_write_gbps/ssd_read_gbps): write "
             << Fixed(bw.write_gbps, 2) << " GB/s, read " << Fixed(bw.read_gbps, 2) << " GB/s; ";
      }
      const double mib = 1048576.0;
      if (config.training.activation_memory > 0) {
        in.budget_bytes = static_cast<double>(config.training.activation_memory) * mib;
      } else {
        const double have = AvailableBytes() / std::max(1, local_ranks);
        in.budget_bytes = std::max(0.0, have - EstimatedStateBytes(config, local_ranks));
      }
      const ActivationPolicy p = ChooseActivationPlaces(in);
      SM_CHECK(p.fits) << "training.checkpoint_activations = \"selective\": no choice of layers "
                          "fits the activations' budget of "
                       << Fixed(in.budget_bytes / mib, 0) << " MiB (the smallest needs "
                       << Fixed(p.bytes / mib, 0) << " MiB at " << max_tokens
                       << " tokens): raise training.activation_memory, lower "
                          "training.micro_batch_tokens"
                       << (in.offload ? "" : ", or set offload.activations = \"nvme\"");
      note << "selective within " << Fixed(in.budget_bytes / mib, 0) << " MiB: " << p.Describe();
      s.places = p.places;
      s.policy = p;
      break;
    }
  }
  for (ActivationPlace p : s.places) {
    s.checkpoint_layers.push_back(p != ActivationPlace::kNone);
    s.offload_layers.push_back(p == ActivationPlace::kOffload);
  }
  if (rank == 0 && !note.str().empty()) s.note = "activations: " + note.str();
  return s;
}

ActivationOffload::ActivationOffload(const RunConfig& config, const ActivationSetup& setup,
                                     int64_t max_tokens) {
  if (!setup.offloaded()) return;
  ActivationOffloadOptions o;
  o.target = TargetOf(config.offload.activations);
  o.layers = setup.places;
  o.max_tokens = max_tokens;
  o.hidden = config.model.hidden;
  o.prefetch_depth = static_cast<int>(config.offload.prefetch_depth);
  o.pin = config.offload.pin_memory;
  o.ssd = SsdOptions(config.offload);
  store_ = std::make_unique<OffloadedActivationStore>(std::move(o));
}

std::string ActivationOffload::Describe() const { return store_ ? store_->Describe() : ""; }

ActivationOffloadStats ActivationOffload::TakeStats() {
  return store_ ? store_->TakeStats() : ActivationOffloadStats{};
}

void ActivationOffload::TakeStepFigures(proto::OffloadReport& report) {
  const ActivationOffloadStats a = TakeStats();
  report.set_activation_out_bytes(a.bytes_out);
  report.set_activation_in_bytes(a.bytes_in);
  report.set_activation_wait_ms((a.save_wait_s + a.fetch_wait_s) * 1e3);
  const ProcessMemory m = ReadProcessMemory();
  report.set_vm_hwm_mib(static_cast<double>(m.vm_hwm) / 1048576.0);
  report.set_vm_lck_mib(static_cast<double>(m.vm_lck) / 1048576.0);
}

}  // namespace seqmesh::launch
