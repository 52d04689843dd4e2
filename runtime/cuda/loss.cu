// Cross-entropy, the global gradient norm's partial sums and the fused AdamW update on the device
// (runtime/cuda/kernels.h has the contracts).
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/reduce.cuh"

namespace seqmesh::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row: max, sum of exp, then the gradient in place.
__global__ void CrossEntropyKernel(float* logits, const int32_t* targets, int64_t vocab,
                                   float grad_scale, int32_t ignore_index, float* row_loss,
                                   int32_t* bad) {
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x;
  float* x = logits + i * vocab;
  const int32_t target = targets[i];
  if (target == ignore_index) {
    for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) x[c] = 0.0f;
    if (threadIdx.x == 0) row_loss[i] = 0.0f;
    return;
  }
  if (target < 0 || target >= vocab) {
    if (threadIdx.x == 0) {
      atomicMin(bad, static_cast<int32_t>(i));
      row_loss[i] = 0.0f;
    }
    return;
  }
  float m = -__int_as_float(0x7f800000);
  for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) m = fmaxf(m, x[c]);
  m = BlockMax(m, scratch);
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) s += expf(x[c] - m);
  s = BlockSum(s, scratch);
  const float lse = m + logf(s);
  const float target_logit = x[target];
  __syncthreads();  // every thread has read x[target] before it is overwritten
  for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) {
    const float g = expf(x[c] - lse) * grad_scale;
    x[c] = c == target ? g - grad_scale : g;
  }
  if (threadIdx.x == 0) row_loss[i] = lse - target_logit;
}

__global__ void SumSquaresKernel(const float* const* data, const int64_t* count, double* partial) {
  __shared__ double scratch[32];
  const float* x = data[blockIdx.x];
  const int64_t n = count[blockIdx.x];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += static_cast<double>(x[i]) * x[i];
  s = BlockSum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// runtime/cpu/vec_impl.inc's AdamW: p = p * (1 - lr wd) - lr / bc1 * m / (sqrt(v) / sqrt(bc2) +
// eps). Explicit _rn intrinsics keep nvcc from contracting a * b + c into an FMA, so each
// operation rounds as the CPU's does.
__global__ void AdamWKernel(float* p, const float* g, float* m, float* v, int64_t n, float decay,
                            float step_size, float bc2_sqrt, float b1, float b2, float c1, float c2,
                            float eps, float gs) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float gi = __fmul_rn(g[i], gs);
  const float mi = __fadd_rn(__fmul_rn(m[i], b1), __fmul_rn(gi, c1));
  const float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(gi, gi), c2));
  m[i] = mi;
  v[i] = vi;
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
  p[i] = __fsub_rn(__fmul_rn(p[i], decay), __fmul_rn(step_size, __fdiv_rn(mi, denom)));
}

}  // namespace

void LaunchCrossEntropy(float* logits, const int32_t* targets, int64_t t, int64_t vocab,
                        float grad_scale, int32_t ignore_index, float* row_loss, int32_t* bad,
                        cudaStream_t stream) {
  if (t == 0) return;
  CrossEntropyKernel<<<static_cast<unsigned>(t), kThreads, 0, stream>>>(
      logits, targets, vocab, grad_scale, ignore_index, row_loss, bad);
  SM_CHECK_CUDA(cudaGetLastError()) << "launching CrossEntropy";
}

void LaunchSumSquares(const float* const* data, const int64_t* count, int64_t chunks,
                      double* partial, cudaStream_t stream) {
  if (chunks == 0) return;
  SumSquaresKernel<<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(data, count, partial);
  SM_CHECK_CUDA(cudaGetLastError()) << "launching GlobalNorm";
}

void LaunchAdamW(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s,
                 cudaStream_t stream) {
  if (n == 0) return;
  // The per-range constants exactly as the CPU computes them, on the host in float.
  const float decay = 1.0f - s.lr * s.weight_decay;
  const float step_size = s.lr / s.bias_correction1;
  const float bc2_sqrt = std::sqrt(s.bias_correction2);
  AdamWKernel<<<Blocks(n, kThreads), kThreads, 0, stream>>>(
      p, g, m, v, n, decay, step_size, bc2_sqrt, s.beta1, s.beta2, 1.0f - s.beta1, 1.0f - s.beta2,
      s.eps, s.grad_scale);
  SM_CHECK_CUDA(cudaGetLastError()) << "launching AdamW";
}

}  // namespace seqmesh::cuda
