#include "runtime/backend.h"

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/matmul.h"

namespace seqmesh {

void ExecutionContext::Validate() const {
  SM_CHECK(threads >= 1) << "thread count must be at least 1, got " << threads;
}

std::string DescribeBf16Matmul(Device device) {
  SM_CHECK(device == Device::kCpu) << "no bf16 description for device " << DeviceName(device);
  const std::string impl = Bf16GemmImplementation();
  if (impl.rfind("emulated", 0) == 0)
    return "emulated on this CPU, which has neither AVX512-BF16 nor AMX: each bf16 GEMM is "
           "widened exactly to fp32 and run through sgemm, with the same results, slower than "
           "fp32";
  return "oneDNN " + impl;
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
