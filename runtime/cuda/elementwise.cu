// The row-wise kernels of a Llama block on the device: embedding, RMSNorm, RoPE, SwiGLU, Add
// (runtime/cuda/kernels.h has the contracts). Arithmetic follows runtime/cpu/vec_impl.inc
// operation for operation where it can (the same formulas, fp32), so results differ from the CPU
// only by summation order inside reductions and by expf against the CPU's polynomial exp.
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/reduce.cuh"
#include "runtime/dropout_hash.h"

namespace seqmesh::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void EmbeddingForwardKernel(const int32_t* tokens, const float* table, int64_t vocab,
                                       int64_t hidden, float* out, int32_t* bad) {
  const int64_t i = blockIdx.x;
  const int32_t id = tokens[i];
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0) atomicMin(bad, static_cast<int32_t>(i));
    return;
  }
  const float* src = table + static_cast<int64_t>(id) * hidden;
  float* dst = out + i * hidden;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) dst[c] = src[c];
}

__global__ void EmbeddingBackwardKernel(const int32_t* tokens, int64_t t, const float* dout,
                                        int64_t hidden, float* dtable) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= hidden) return;
  for (int64_t i = 0; i < t; ++i)
    dtable[static_cast<int64_t>(tokens[i]) * hidden + c] += dout[i * hidden + c];
}

__global__ void RmsNormForwardKernel(const float* x, const float* w, float* y, float* rstd,
                                     int64_t n, float eps) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) ss += xr[c] * xr[c];
  ss = BlockSum(ss, scratch);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) yr[c] = w[c] * (xr[c] * r);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// dx per row: y = w * xhat, xhat = x * rstd, g = w * dy: dx = rstd * (g - xhat * mean(g * xhat)).
__global__ void RmsNormBackwardRowKernel(const float* dy, const float* x, const float* w,
                                         const float* rstd, float* dx, int64_t n, bool accumulate) {
  __shared__ float scratch[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * n;
  const float r = rstd[blockIdx.x];
  float gx = 0.0f;
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x)
    gx += w[c] * dy[base + c] * (x[base + c] * r);
  gx = BlockSum(gx, scratch);
  const float mean = gx / static_cast<float>(n);
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
    const float v = r * (w[c] * dy[base + c] - x[base + c] * r * mean);
    dx[base + c] = accumulate ? dx[base + c] + v : v;
  }
}

// partial[b][c] = sum over the rows of block b, in row order, of dy * xhat.
__global__ void RmsNormBackwardPartialKernel(const float* dy, const float* x, const float* rstd,
                                             float* partial, int64_t t, int64_t n) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= n) return;
  const int64_t b = blockIdx.y;
  const int64_t r1 = min(t, (b + 1) * kRmsRowsPerBlock);
  float s = 0.0f;
  for (int64_t i = b * kRmsRowsPerBlock; i < r1; ++i) s += dy[i * n + c] * (x[i * n + c] * rstd[i]);
  partial[b * n + c] = s;
}

// dw += the block partials in block order (the CPU's order).
__global__ void RmsNormBackwardSumKernel(const float* partial, float* dw, int64_t blocks,
                                         int64_t n) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= n) return;
  float acc = dw[c];
  for (int64_t b = 0; b < blocks; ++b) acc += partial[b * n + c];
  dw[c] = acc;
}

__global__ void RopeTableKernel(const int32_t* positions, int64_t t, const double* inv_freq,
                                int half, float* cos_out, float* sin_out) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= t * half) return;
  const int64_t r = idx / half;
  const int i = static_cast<int>(idx % half);
  const double angle = positions[r] * inv_freq[i];
  cos_out[idx] = static_cast<float>(cos(angle));
  sin_out[idx] = static_cast<float>(sin(angle));
}

__global__ void RopeApplyKernel(float* x, int64_t ld, int64_t t, int heads, int head_dim,
                                const float* cos_t, const float* sin_t, float sign) {
  const int half = head_dim / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= t * heads * half) return;
  const int i = static_cast<int>(idx % half);
  const int h = static_cast<int>((idx / half) % heads);
  const int64_t r = idx / (static_cast<int64_t>(half) * heads);
  float* x1 = x + r * ld + static_cast<int64_t>(h) * head_dim;
  float* x2 = x1 + half;
  const float a = x1[i], b = x2[i], c = cos_t[r * half + i], s = sign * sin_t[r * half + i];
  x1[i] = a * c - b * s;
  x2[i] = b * c + a * s;
}

__device__ __forceinline__ float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void SwiGluForwardKernel(const float* gu, float* h, int64_t t, int64_t f) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= t * f) return;
  const int64_t r = idx / f, c = idx % f;
  const float g = gu[r * 2 * f + c], u = gu[r * 2 * f + f + c];
  h[idx] = g * Sigmoid(g) * u;
}

__global__ void SwiGluBackwardKernel(const float* gu, const float* dh, float* dgu, int64_t t,
                                     int64_t f) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= t * f) return;
  const int64_t r = idx / f, c = idx % f;
  const float g = gu[r * 2 * f + c], u = gu[r * 2 * f + f + c];
  const float sg = Sigmoid(g), silu = g * sg;
  dgu[r * 2 * f + f + c] = dh[idx] * silu;
  dgu[r * 2 * f + c] = dh[idx] * u * sg * (1.0f + g * (1.0f - sg));
}

__global__ void AddKernel(float* y, const float* x, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += x[i];
}

__global__ void AddRowsKernel(float* dst, int64_t dst_ld, const float* src, int64_t src_ld,
                              int64_t rows, int64_t cols, float scale) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * cols) return;
  const int64_t r = idx / cols, c = idx % cols;
  dst[r * dst_ld + c] += scale * src[r * src_ld + c];
}

__global__ void DropoutKernel(const float* x, float* y, int64_t n, float p, float keep_scale,
                              uint64_t key) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  y[i] = DropoutUniform(key, static_cast<uint64_t>(i)) >= p ? x[i] * keep_scale : 0.0f;
}

// runtime/dtype.h's FloatToBf16, on the device.
__global__ void FloatToBf16Kernel(const float* in, uint16_t* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  uint32_t u = __float_as_uint(in[i]);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    out[i] = static_cast<uint16_t>((u >> 16) | 0x40);
    return;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  out[i] = static_cast<uint16_t>(u >> 16);
}

__global__ void Bf16ToFloatKernel(const uint16_t* in, float* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __uint_as_float(static_cast<uint32_t>(in[i]) << 16);
}

void CheckLaunch(const char* what) { SM_CHECK_CUDA(cudaGetLastError()) << "launching " << what; }

}  // namespace

void LaunchEmbeddingForward(const int32_t* tokens, int64_t t, const float* table, int64_t vocab,
                            int64_t hidden, float* out, int32_t* bad, cudaStream_t stream) {
  if (t == 0) return;
  EmbeddingForwardKernel<<<static_cast<unsigned>(t), kThreads, 0, stream>>>(tokens, table, vocab,
                                                                            hidden, out, bad);
  CheckLaunch("EmbeddingForward");
}

void LaunchEmbeddingBackward(const int32_t* tokens, int64_t t, const float* dout, int64_t hidden,
                             float* dtable, cudaStream_t stream) {
  if (t == 0 || hidden == 0) return;
  EmbeddingBackwardKernel<<<Blocks(hidden, kThreads), kThreads, 0, stream>>>(tokens, t, dout,
                                                                             hidden, dtable);
  CheckLaunch("EmbeddingBackward");
}

void LaunchRmsNormForward(const float* x, const float* w, float* y, float* rstd, int64_t t,
                          int64_t n, float eps, cudaStream_t stream) {
  if (t == 0) return;
  RmsNormForwardKernel<<<static_cast<unsigned>(t), kThreads, 0, stream>>>(x, w, y, rstd, n, eps);
  CheckLaunch("RmsNormForward");
}

void LaunchRmsNormBackward(const float* dy, const float* x, const float* w, const float* rstd,
                           float* dx, float* dw, float* partial, int64_t t, int64_t n,
                           bool accumulate, cudaStream_t stream) {
  if (t == 0 || n == 0) return;
  RmsNormBackwardRowKernel<<<static_cast<unsigned>(t), kThreads, 0, stream>>>(dy, x, w, rstd, dx, n,
                                                                              accumulate);
  CheckLaunch("RmsNormBackward (dx)");
  const int64_t blocks = (t + kRmsRowsPerBlock - 1) / kRmsRowsPerBlock;
  SM_CHECK(blocks <= 65535) << "RMSNorm backward over " << t << " rows: at most "
                            << 65535 * kRmsRowsPerBlock << " rows per call";
  RmsNormBackwardPartialKernel<<<dim3(Blocks(n, kThreads), static_cast<unsigned>(blocks)), kThreads,
                                 0, stream>>>(dy, x, rstd, partial, t, n);
  CheckLaunch("RmsNormBackward (dw partials)");
  RmsNormBackwardSumKernel<<<Blocks(n, kThreads), kThreads, 0, stream>>>(partial, dw, blocks, n);
  CheckLaunch("RmsNormBackward (dw)");
}

void LaunchRopeTable(const int32_t* positions, int64_t t, const double* inv_freq, int half,
                     float* cos, float* sin, cudaStream_t stream) {
  if (t == 0 || half == 0) return;
  RopeTableKernel<<<Blocks(t * half, kThreads), kThreads, 0, stream>>>(positions, t, inv_freq, half,
                                                                       cos, sin);
  CheckLaunch("RopeTable");
}

void LaunchRopeApply(float* x, int64_t ld, int64_t t, int heads, int head_dim, const float* cos,
                     const float* sin, bool inverse, cudaStream_t stream) {
  const int64_t n = t * heads * (head_dim / 2);
  if (n == 0) return;
  RopeApplyKernel<<<Blocks(n, kThreads), kThreads, 0, stream>>>(x, ld, t, heads, head_dim, cos, sin,
                                                                inverse ? -1.0f : 1.0f);
  CheckLaunch("RopeApply");
}

void LaunchSwiGluForward(const float* gu, float* h, int64_t t, int64_t f, cudaStream_t stream) {
  if (t * f == 0) return;
  SwiGluForwardKernel<<<Blocks(t * f, kThreads), kThreads, 0, stream>>>(gu, h, t, f);
  CheckLaunch("SwiGluForward");
}

void LaunchSwiGluBackward(const float* gu, const float* dh, float* dgu, int64_t t, int64_t f,
                          cudaStream_t stream) {
  if (t * f == 0) return;
  SwiGluBackwardKernel<<<Blocks(t * f, kThreads), kThreads, 0, stream>>>(gu, dh, dgu, t, f);
  CheckLaunch("SwiGluBackward");
}

void LaunchAdd(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  AddKernel<<<Blocks(n, kThreads), kThreads, 0, stream>>>(y, x, n);
  CheckLaunch("Add");
}

}  // namespace seqmesh::cuda

namespace seqmesh::cuda {

void LaunchAddRows(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows,
                   int64_t cols, float scale, cudaStream_t stream) {
  if (rows * cols == 0) return;
  AddRowsKernel<<<Blocks(rows * cols, kThreads), kThreads, 0, stream>>>(dst, dst_ld, src, src_ld,
                                                                        rows, cols, scale);
  CheckLaunch("AddRows");
}

void LaunchDropout(const float* x, float* y, int64_t n, float p, uint64_t key,
                   cudaStream_t stream) {
  if (n == 0) return;
  DropoutKernel<<<Blocks(n, kThreads), kThreads, 0, stream>>>(x, y, n, p, 1.0f / (1.0f - p), key);
  CheckLaunch("Dropout");
}

void LaunchFloatToBf16(const float* in, uint16_t* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  FloatToBf16Kernel<<<Blocks(n, kThreads), kThreads, 0, stream>>>(in, out, n);
  CheckLaunch("f32 -> bf16");
}

void LaunchBf16ToFloat(const uint16_t* in, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  Bf16ToFloatKernel<<<Blocks(n, kThreads), kThreads, 0, stream>>>(in, out, n);
  CheckLaunch("bf16 -> f32");
}

}  // namespace seqmesh::cuda
