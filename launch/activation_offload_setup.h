// A run's training.checkpoint_activations and offload.activations made concrete for one rank
// (issue 15, item 2; docs/OFFLOAD.md, "Activations"): which layers are checkpointed, which of
// those send their saved input out (pinned host memory or the SSD scratch file), and the store
// that does it.
//
//   checkpoint_activations = false        every layer keeps its activations
//   checkpoint_activations = true         every layer recomputes; with offload.activations set,
//                                         every layer's input is offloaded
//   checkpoint_activations = "selective"  ChooseActivationPlaces per layer from the cost model's
//                                         T(s) at the micro-batch, the model's exact bytes, the
//                                         target's bandwidths (the cost file's d2h/h2d or
//                                         ssd_*_gbps; measured here when it has none) and
//                                         training.activation_memory (0: what the machine has
//                                         left beside the rest of the rank's estimate)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "offload/activation_offload.h"
#include "proto/coordinator.pb.h"
#include "runtime/run_config.h"
#include "scheduler/cost_model.h"

namespace seqmesh::launch {

struct ActivationSetup {
  std::vector<bool> checkpoint_layers;     // HdpStepOptions::checkpoint_layers
  std::vector<bool> offload_layers;        // HdpStepOptions::offload_layers
  std::vector<ActivationPlace> places;     // the two together
  std::optional<ActivationPolicy> policy;  // "selective": what it chose and why
  std::string note;                        // the log line ("activations: ..."); empty: default
  // distributed.offload: the plan's ratios choose per micro-batch (HdpStepOptions::plan_offload);
  // checkpoint_layers and offload_layers are empty, `places` are the store's.
  bool plan_offload = false;
  bool offloaded() const;
};

// distributed.offload at the coordinator: the cost model's layers must be the model's (the
// plan's ratios count them), and with offload.activations = "nvme" a cost model without the
// SSD's bandwidths gets them measured here (one line to `log`).
void PrepareOffloadCost(const RunConfig& config, scheduler::CostModel& cost, std::ostream& log);

// The SSD engine's options from [offload] (nvme_path, block_size, queue_depth).
SsdEngineOptions SsdOptions(const OffloadConfig& offload);
// The model's activation rows for this run: HdpStep::ActivationTokens of the capacity, or with
// distributed.offload the largest pass its plans may give (Model::OffloadMaxPassTokens).
int64_t ActivationRowsFor(const RunConfig& config);

// The policy's inputs for this run at `max_tokens` activation rows (budget 0, the cost file's
// bandwidths as they are).
ActivationPolicyInput ActivationPolicyInputFor(const RunConfig& config, int64_t max_tokens,
                                               const scheduler::CostModel& cost);
// The layers' activations at `max_tokens` rows as the run's mode plans them ("selective": the
// smallest plan it may choose): preflight's estimate.
double EstimatedActivationBytes(const RunConfig& config, int64_t max_tokens);

// `max_tokens`: the model's activation rows (HdpStep::ActivationTokens of the capacity);
// `local_ranks`: the ranks on this machine (they share its memory). Errors name the fix (a
// budget no plan fits).
ActivationSetup PlanActivationSetup(const RunConfig& config, int64_t max_tokens,
                                    const scheduler::CostModel& cost, int local_ranks, int rank);

// The store of one rank's offloaded layers; none (store() null) when no layer is offloaded.
class ActivationOffload {
 public:
  ActivationOffload(const RunConfig& config, const ActivationSetup& setup, int64_t max_tokens);
  OffloadedActivationStore* store() { return store_.get(); }
  std::string Describe() const;
  ActivationOffloadStats TakeStats();
  // The step's figures into `report` (the activation_* fields, and VmHWM/VmLck).
  void TakeStepFigures(proto::OffloadReport& report);

 private:
  std::unique_ptr<OffloadedActivationStore> store_;
};

}  // namespace seqmesh::launch
