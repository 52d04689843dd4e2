#include "launch/optimizer_offload.h"

#include <algorithm>
#include <memory>
#include <sstream>

#include "launch/format.h"
#include "launch/step_metrics.h"

namespace seqmesh::launch {
namespace {
constexpr double kMiB = 1 << 20;
}

OptimizerStateFactory OptimizerOffload::Factory() {
  if (!enabled()) return {};
  return [this](std::span<const Tensor> params) -> std::unique_ptr<OptimizerStateStore> {
    auto store = std::make_unique<OffloadedOptimizerStateStore>(params, config_, rank_);
    store_ = store.get();
    return store;
  };
}

std::string OptimizerOffload::Describe() const { return store_ ? store_->Describe() : ""; }

OptimizerOffload::StepFigures OptimizerOffload::TakeStepFigures() {
  StepFigures f;
  if (store_) f.io = store_->TakeStats();
  f.memory = ReadProcessMemory();
  return f;
}

proto::OffloadReport ReportOf(const OptimizerOffload::StepFigures& f) {
  proto::OffloadReport r;
  r.set_read_bytes(f.io.bytes_read);
  r.set_written_bytes(f.io.bytes_written);
  r.set_io_s(f.io.io_seconds);
  r.set_overlap(f.io.OverlapEfficiency());
  r.set_update_ms(f.io.visit_seconds * 1e3);
  r.set_vm_hwm_mib(f.memory.vm_hwm / kMiB);
  r.set_vm_lck_mib(f.memory.vm_lck / kMiB);
  return r;
}

}  // namespace seqmesh::launch
