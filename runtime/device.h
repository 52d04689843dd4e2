// Where a tensor's memory lives and where kernels on it run. Every Tensor carries one; a Backend
// accepts only tensors of its own device (runtime/backend.h). kCuda is memory of the current CUDA
// device and the CUDA backend's kernels (runtime/cuda/, DESIGN.md section 8); whether this build
// and machine can use it: DeviceUnavailableReason (runtime/backend.h).
#pragma once

#include <cstdint>
#include <string_view>

namespace seqmesh {

enum class Device : uint8_t { kCpu, kCuda };

constexpr std::string_view DeviceName(Device d) {
  switch (d) {
    case Device::kCpu:
      return "cpu";
    case Device::kCuda:
      return "cuda";
  }
  return "?";
}

}  // namespace seqmesh
