#include "runtime/backend.h"

#include "runtime/cpu/cpu_backend.h"

namespace seqmesh {

void ExecutionContext::Validate() const {
  SM_CHECK(threads >= 1) << "thread count must be at least 1, got " << threads;
}

std::shared_ptr<Backend> MakeBackend(Device device, const ExecutionContext& context) {
  switch (device) {
    case Device::kCpu:
      return std::make_shared<CpuBackend>(context);
  }
  SM_CHECK(false) << "no backend for device " << DeviceName(device);
  __builtin_unreachable();
}

}  // namespace seqmesh
