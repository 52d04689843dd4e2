// A run's [offload] section made concrete: the factory HdpStep builds this rank's optimizer
// state with (launch/ is the layer that sees both parallel/ and offload/), and the per-step
// offload figures of the console line and metrics.jsonl (issue 14, item 6).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "offload/optimizer_store.h"
#include "offload/parameter_offload.h"
#include "parallel/hdp_step.h"
#include "proto/coordinator.pb.h"
#include "runtime/json.h"
#include "runtime/optimizer_state_store.h"
#include "runtime/run_config.h"

namespace seqmesh::launch {

class OptimizerOffload {
 public:
  OptimizerOffload(const OffloadConfig& config, int rank) : config_(config), rank_(rank) {}
  OptimizerOffload(const OptimizerOffload&) = delete;
  OptimizerOffload& operator=(const OptimizerOffload&) = delete;

  bool enabled() const { return config_.optimizer != OffloadDevice::kNone; }
  // Null when offload.optimizer = "none" (the state stays in memory). The store it makes is
  // owned by the GradSync that called it; this keeps a pointer for the figures, so it must not
  // outlive that GradSync's use.
  OptimizerStateFactory Factory();
  // Where the state lives (one log line); empty when not offloaded or not made yet.
  std::string Describe() const;
  // The store Factory made (null before, or when not offloaded).
  OffloadedOptimizerStateStore* store() const { return store_; }

  // The figures since the last call (bytes, GiB/s, overlap) and this process's VmHWM and VmLck.
  struct StepFigures {
    OffloadStats io;
    ProcessMemory memory;
  };
  StepFigures TakeStepFigures();

 private:
  OffloadConfig config_;
  int rank_;
  OffloadedOptimizerStateStore* store_ = nullptr;
};

// offload.parameters = "nvme": makes `store` for the step's model and routes every use of the
// weights through it (the model's passes and sweeps; the update's: the optimizer store's alone,
// gradient sync's shard copies with several ranks). Before the model's initialization or load.
// Returns its log line ("" when the parameters stay in memory).
std::string UseParameterOffload(const OffloadConfig& config, HdpStep& step,
                                OptimizerOffload& optimizer,
                                std::optional<OffloadedParameterStore>& store);

// The parameter store's figures since the last call into `report` (parameter_* fields).
void TakeParameterFigures(OffloadedParameterStore& store, proto::OffloadReport& report);

// The figures as a worker reports them to the coordinator.
proto::OffloadReport ReportOf(const OptimizerOffload::StepFigures& f);
// (metrics.jsonl fields and the console text of these: launch/step_metrics.h.)

}  // namespace seqmesh::launch
