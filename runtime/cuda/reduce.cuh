// Fixed-order reductions inside a thread block, shared by the CUDA backend's kernels. Warp sums
// use the xor butterfly: at every step each lane adds the same two values as its partner, so all
// lanes end with the same bits; across warps the per-warp results are combined by warp 0 in warp
// order. No atomics: the result depends only on the block size and the data.
#pragma once

#include <cuda_runtime.h>

namespace seqmesh::cuda {

template <typename T>
__device__ __forceinline__ T WarpSum(T v) {
  for (int mask = 16; mask > 0; mask >>= 1) v += __shfl_xor_sync(0xffffffffu, v, mask);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int mask = 16; mask > 0; mask >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, mask));
  return v;
}

// The sum of every thread's v over the block (blockDim.x a multiple of 32, at most 1024),
// returned to every thread. `scratch` holds 32 T in shared memory; the call synchronizes.
template <typename T>
__device__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < warps ? scratch[lane] : T(0);
    w = WarpSum(w);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  return scratch[0];
}

__device__ inline float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < warps ? scratch[lane] : -__int_as_float(0x7f800000);
    w = WarpMax(w);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  return scratch[0];
}

inline unsigned Blocks(long long n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

}  // namespace seqmesh::cuda
