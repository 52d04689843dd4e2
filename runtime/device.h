// Where a tensor's memory lives and where kernels on it run. Every Tensor carries one; a Backend
// accepts only tensors of its own device (runtime/backend.h). CPU is the only device today; the
// CUDA backend (runtime/cuda/, DESIGN.md section 8) adds kCuda.
#pragma once

#include <cstdint>
#include <string_view>

namespace seqmesh {

enum class Device : uint8_t { kCpu };

constexpr std::string_view DeviceName(Device d) {
  switch (d) {
    case Device::kCpu:
      return "cpu";
  }
  return "?";
}

}  // namespace seqmesh
