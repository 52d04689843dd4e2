#include "runtime/backend.h"

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/matmul.h"
#if SEQMESH_CUDA_BACKEND
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_device.h"
#endif

namespace seqmesh {

void ExecutionContext::Validate() const {
  SM_CHECK(threads >= 1) << "thread count must be at least 1, got " << threads;
}

std::string DeviceUnavailableReason(Device device) {
  switch (device) {
    case Device::kCpu:
      return "";
    case Device::kCuda:
#if SEQMESH_CUDA_BACKEND
      return cuda::UnavailableReason();
#else
      return "built without CUDA: this seqmesh has no CUDA backend (nvcc was not found at build "
             "time, or -DSEQMESH_CUDA=OFF); rebuild with nvcc on PATH";
#endif
  }
  return "unknown device";
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
    case Device::kCuda: {
      const std::string reason = DeviceUnavailableReason(device);
      SM_CHECK(reason.empty()) << "device cuda: " << reason;
#if SEQMESH_CUDA_BACKEND
      return std::make_shared<cuda::CudaBackend>(context);
#endif
      break;
    }
  }
  SM_CHECK(false) << "no backend for device " << DeviceName(device);
  __builtin_unreachable();
}

DeviceChoice ChooseComputeDevice(Device requested) {
  if (requested == Device::kCpu) return {Device::kCpu, ""};
  const std::string reason = DeviceUnavailableReason(requested);
  if (!reason.empty())
    return {Device::kCpu, "training.device = \"" + std::string(DeviceName(requested)) +
                              "\": " + reason + "; running on CPU"};
  return {Device::kCpu, "training.device = \"" + std::string(DeviceName(requested)) +
                            "\": the model does not run on the CUDA backend yet (its weights and "
                            "activations are host arenas; docs/CUDA.md); running on CPU"};
}

}  // namespace seqmesh
