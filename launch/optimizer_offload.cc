#include "launch/optimizer_offload.h"

#include <algorithm>
#include <memory>
#include <sstream>

#include "launch/format.h"
#include "launch/step_metrics.h"
#include "runtime/check.h"

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

void TakeParameterFigures(OffloadedParameterStore& store, proto::OffloadReport& report) {
  const ParameterOffloadStats p = store.TakeStats();
  report.set_parameter_read_bytes(p.bytes_read);
  report.set_parameter_written_bytes(p.bytes_written);
  report.set_parameter_wait_ms(p.acquire_wait_s * 1e3);
}

std::string UseParameterOffload(const OffloadConfig& config, HdpStep& step,
                                OptimizerOffload& optimizer,
                                std::optional<OffloadedParameterStore>& store) {
  if (config.parameters != OffloadDevice::kNvme) return "";
  Model& model = step.model();
  ParameterOffloadOptions po;
  po.pin = config.pin_memory;
  po.ssd.dir = config.nvme_path;
  po.ssd.block_bytes = static_cast<size_t>(config.block_size);
  po.ssd.queue_depth = static_cast<int>(config.queue_depth);
  store.emplace(model.params(), model.param_layout(), po);
  model.SetParamAccess(store->Access());
  model.UseParameterStore(&*store);
  if (step.sync().alone()) {
    // The optimizer store's pieces are the model's tensors: its update sweeps them.
    SM_CHECK(optimizer.store() != nullptr) << "offload.parameters needs the optimizer's store";
    optimizer.store()->SetParamAccess(store->Access());
  } else {
    step.sync().SetParamAccess(store->Access());
  }
  return store->Describe();
}

}  // namespace seqmesh::launch
