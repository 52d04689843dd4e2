// The CUDA backend's kernels on raw device pointers (llm.c style): CudaBackend
// (runtime/cuda/cuda_backend.h) checks its tensors, then calls these. Each enqueues on `stream`
// and returns; none synchronizes. Shapes and semantics are those of runtime/cpu/layers.h and
// runtime/attention.h. Every reduction runs in a fixed order (a fixed tree inside a block, fixed
// partial buffers summed in index order across blocks), never with float atomics, so results do
// not depend on launch timing.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/adamw_step.h"
#include "runtime/attention.h"

namespace seqmesh::cuda {

// elementwise.cu
// out (T, H) = table[tokens]; a token outside [0, V) leaves its row untouched and sets *bad to
// the smallest offending position (atomicMin on an int: order-independent).
void LaunchEmbeddingForward(const int32_t* tokens, int64_t t, const float* table, int64_t vocab,
                            int64_t hidden, float* out, int32_t* bad, cudaStream_t stream);
// dtable[tokens[i]] += dout[i]: one thread per column walks the tokens in order (the CPU's
// order), so no two threads write one element.
void LaunchEmbeddingBackward(const int32_t* tokens, int64_t t, const float* dout, int64_t hidden,
                             float* dtable, cudaStream_t stream);
void LaunchRmsNormForward(const float* x, const float* w, float* y, float* rstd, int64_t t,
                          int64_t n, float eps, cudaStream_t stream);
// partial: (ceil(T / kRmsRowsPerBlock), n) scratch for dw's fixed-order reduction.
constexpr int64_t kRmsRowsPerBlock = 64;
void LaunchRmsNormBackward(const float* dy, const float* x, const float* w, const float* rstd,
                           float* dx, float* dw, float* partial, int64_t t, int64_t n,
                           bool accumulate, cudaStream_t stream);
// inv_freq: device copy of the half = head_dim / 2 inverse frequencies.
void LaunchRopeTable(const int32_t* positions, int64_t t, const double* inv_freq, int half,
                     float* cos, float* sin, cudaStream_t stream);
void LaunchRopeApply(float* x, int64_t ld, int64_t t, int heads, int head_dim, const float* cos,
                     const float* sin, bool inverse, cudaStream_t stream);
void LaunchSwiGluForward(const float* gu, float* h, int64_t t, int64_t f, cudaStream_t stream);
void LaunchSwiGluBackward(const float* gu, const float* dh, float* dgu, int64_t t, int64_t f,
                          cudaStream_t stream);
void LaunchAdd(float* y, const float* x, int64_t n, cudaStream_t stream);
// dst row r += scale * src row r over `cols` floats.
void LaunchAddRows(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows,
                   int64_t cols, float scale, cudaStream_t stream);
// y = x * keep / (1 - p) with runtime/dropout_hash.h's mask (the CPU's bits).
void LaunchDropout(const float* x, float* y, int64_t n, float p, uint64_t key, cudaStream_t stream);
// f32 <-> bf16, round to nearest even, NaN stays NaN (runtime/dtype.h's rule, bit for bit).
void LaunchFloatToBf16(const float* in, uint16_t* out, int64_t n, cudaStream_t stream);
void LaunchBf16ToFloat(const uint16_t* in, float* out, int64_t n, cudaStream_t stream);

// loss.cu
// Per row: loss[i] = lse - logit[target] and logits overwritten with the gradient times
// grad_scale (zero rows for ignored targets, loss 0). A target outside [0, V) that is not the
// ignore index leaves its row untouched and sets *bad to the smallest such row.
void LaunchCrossEntropy(float* logits, const int32_t* targets, int64_t t, int64_t vocab,
                        float grad_scale, int32_t ignore_index, float* row_loss, int32_t* bad,
                        cudaStream_t stream);
// Chunks of GlobalNorm: chunk i covers data[i] (count[i] floats); partial[i] = sum of squares in
// double, a fixed tree per chunk.
void LaunchSumSquares(const float* const* data, const int64_t* count, int64_t chunks,
                      double* partial, cudaStream_t stream);
// One range of the fused AdamW update (runtime/cpu/vec_impl.inc's formula, op for op).
void LaunchAdamW(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s,
                 cudaStream_t stream);

// attention.cu. `work` and `segments` are device copies (see CudaBackend::AttentionForward).
struct AttentionWork {
  int32_t segment;
  int32_t row0;  // first segment-relative row of this block (query rows, or key rows for dK/dV)
};
constexpr int kAttentionRowsPerBlock = 8;  // one warp per row
void LaunchAttentionForward(const AttentionDims& dims, const AttentionSegment* segments,
                            const AttentionWork* work, int64_t work_count, const AttentionIo& io,
                            float scale, bool causal, cudaStream_t stream);
// delta[h * delta_ld + r] = dot(dout, out) of row r, head h, for the rows of `work` (query rows).
void LaunchAttentionDelta(const AttentionDims& dims, const AttentionSegment* segments,
                          const AttentionWork* work, int64_t work_count, StridedRows out,
                          StridedRows dout, float* delta, int64_t delta_ld, cudaStream_t stream);
// dq += over the query rows of `q_work`.
void LaunchAttentionBackwardQuery(const AttentionDims& dims, const AttentionSegment* segments,
                                  const AttentionWork* q_work, int64_t q_work_count,
                                  const AttentionIo& io, StridedRows dout, const float* delta,
                                  int64_t delta_ld, StridedRows dq, float scale, bool causal,
                                  cudaStream_t stream);
// dk, dv += over the key rows of `k_work`, query heads of each kv head's group in order.
void LaunchAttentionBackwardKeyValue(const AttentionDims& dims, const AttentionSegment* segments,
                                     const AttentionWork* k_work, int64_t k_work_count,
                                     const AttentionIo& io, StridedRows dout, const float* delta,
                                     int64_t delta_ld, StridedRows dk, StridedRows dv, float scale,
                                     bool causal, cudaStream_t stream);
void LaunchAttentionMerge(const AttentionDims& dims, int64_t rows, StridedRows out, float* lse,
                          int64_t lse_ld, StridedRows part, const float* part_lse,
                          int64_t part_lse_ld, cudaStream_t stream);

// The largest head_dim the attention kernels take (per-lane registers hold head_dim / 32).
constexpr int kMaxAttentionHeadDim = 256;

}  // namespace seqmesh::cuda
