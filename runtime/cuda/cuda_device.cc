#include "runtime/cuda/cuda_device.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <sstream>

#include "runtime/cuda/cublaslt.h"
#include "runtime/cuda/cuda_check.h"

namespace seqmesh::cuda {

std::string UnavailableReason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    std::ostringstream os;
    os << "no CUDA device: cudaGetDeviceCount returned " << cudaGetErrorName(e) << " ("
       << (e == cudaSuccess ? "0 devices" : cudaGetErrorString(e))
       << "); run on a machine with an NVIDIA GPU and its driver, or on the CPU backend";
    return os.str();
  }
  return CublasLtUnavailableReason();
}

std::string DescribeDevice(int device) {
  cudaDeviceProp p{};
  SM_CHECK_CUDA(cudaGetDeviceProperties(&p, device))
      << "reading the properties of device " << device;
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%s (sm_%d%d, %d SMs, %.1f GiB); driver %d.%d, runtime %d.%d",
                p.name, p.major, p.minor, p.multiProcessorCount,
                static_cast<double>(p.totalGlobalMem) / (1 << 30), driver / 1000,
                driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
  return buf;
}

}  // namespace seqmesh::cuda
