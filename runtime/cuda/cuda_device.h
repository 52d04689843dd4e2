// Whether this process can compute on a CUDA device, and what that device is. Plain C++ (no CUDA
// headers), so runtime/backend.cc can ask without including the toolkit.
#pragma once

#include <string>

namespace seqmesh::cuda {

// "" when CUDA device 0 can run the CUDA backend (a device, a driver and libcublasLt), else one
// line naming the problem and the fix, e.g.
//   no CUDA device: cudaGetDeviceCount returned cudaErrorNoDevice (no CUDA-capable device is
//   detected); run on a machine with an NVIDIA GPU and its driver, or on the CPU backend
std::string UnavailableReason();

// "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB); driver 13.0, runtime 13.0" for `device`.
std::string DescribeDevice(int device = 0);

}  // namespace seqmesh::cuda
