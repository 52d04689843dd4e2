// Flash attention on the device, fp32, over packed segments with grouped-query heads
// (runtime/attention.h has the layout and the contract; runtime/cuda/kernels.h the launchers).
//
// One warp owns one row: lane l holds elements l, l + 32, ... of the row's head (head_dim <= 256,
// so at most 8 per lane), and a dot product is a per-lane sum followed by a xor-butterfly warp sum
// (the same bits in every lane). A block is kAttentionRowsPerBlock warps over consecutive rows of
// one segment and one head; it stages tiles of the rows it streams over (keys and values in the
// forward, queries and output gradients for dK/dV) in shared memory.
//
// Forward: online softmax over the visible keys in order; out = acc / l, lse = m + log l.
// Backward (FlashAttention-2's recomputation, split so every output has one owner): delta = rowsum
// (dO * O); a dQ pass (warp per query row, keys in order) and a dK/dV pass (warp per key row,
// the group's query heads in order, then query rows in order) both recompute P = exp(S - lse) and
// dS = P * (dP - delta). Each output element is written by one warp that adds its terms in a
// fixed order: no atomics, results do not depend on launch timing.
//
// This is the correct, deterministic reference on the GPU (DESIGN.md section 8), not the fast
// kernel: its scores are warp reductions on CUDA cores, not tensor-core tiles.
#include <cmath>

#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/reduce.cuh"

namespace seqmesh::cuda {
namespace {

constexpr int kPerLane = kMaxAttentionHeadDim / 32;
constexpr int kWarps = kAttentionRowsPerBlock;
constexpr int kTileFloats = 4096;  // floats per staged tile: two tiles are 32 KiB

__device__ __forceinline__ float NegInf() { return -__int_as_float(0x7f800000); }

// Keys of segment s visible to segment-relative query row i, in [0, k_len].
__device__ __forceinline__ int64_t VisibleKeys(const AttentionSegment& s, int64_t i, bool causal) {
  if (!causal) return s.k_len;
  const int64_t v = s.q_pos + i - s.k_pos + 1;
  return v < 0 ? 0 : (v > s.k_len ? s.k_len : v);
}

// The first segment-relative query row that sees key j.
__device__ __forceinline__ int64_t FirstQuery(const AttentionSegment& s, int64_t j, bool causal) {
  if (!causal) return 0;
  const int64_t f = s.k_pos + j - s.q_pos;
  return f < 0 ? 0 : f;
}

__device__ __forceinline__ void LoadRow(const float* row, int d, int lane, float (&r)[kPerLane]) {
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int c = lane + 32 * j;
    r[j] = c < d ? row[c] : 0.0f;
  }
}

__device__ __forceinline__ float Dot(const float (&r)[kPerLane], const float* row, int d,
                                     int lane) {
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int c = lane + 32 * j;
    if (c < d) s += r[j] * row[c];
  }
  return WarpSum(s);
}

// Copies rows [r0, r0 + rows) of one head's columns (d floats from `col`) into `tile`.
__device__ __forceinline__ void StageRows(float* tile, const float* base, int64_t ld, int64_t r0,
                                          int rows, int64_t col, int d) {
  for (int idx = threadIdx.x; idx < rows * d; idx += blockDim.x) {
    const int r = idx / d, c = idx % d;
    tile[idx] = base[(r0 + r) * ld + col + c];
  }
}

__global__ void ForwardKernel(AttentionDims dims, const AttentionSegment* segments,
                              const AttentionWork* work, AttentionIo io, float scale, bool causal,
                              int tile_rows) {
  extern __shared__ float smem[];
  const int d = dims.head_dim;
  float* k_tile = smem;
  float* v_tile = smem + tile_rows * d;
  const AttentionWork w = work[blockIdx.x];
  const AttentionSegment s = segments[w.segment];
  const int head = blockIdx.y, kv = head / (dims.heads / dims.kv_heads);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = w.row0 + warp;
  const bool active = row < s.q_len;
  const int64_t last = min(static_cast<int64_t>(w.row0) + kWarps, s.q_len) - 1;
  const int64_t nk_block = VisibleKeys(s, last, causal);
  const int64_t nk = active ? VisibleKeys(s, row, causal) : 0;

  float q[kPerLane], acc[kPerLane];
  if (active) LoadRow(io.q.data + (s.q_begin + row) * io.q.ld + head * d, d, lane, q);
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) acc[j] = 0.0f;
  float m = NegInf(), l = 0.0f;

  for (int64_t c0 = 0; c0 < nk_block; c0 += tile_rows) {
    const int rows = static_cast<int>(min(static_cast<int64_t>(tile_rows), nk_block - c0));
    __syncthreads();
    StageRows(k_tile, io.k.data, io.k.ld, s.k_begin + c0, rows, static_cast<int64_t>(kv) * d, d);
    StageRows(v_tile, io.v.data, io.v.ld, s.k_begin + c0, rows, static_cast<int64_t>(kv) * d, d);
    __syncthreads();
    const int64_t allowed = min(static_cast<int64_t>(rows), max(int64_t{0}, nk - c0));
    for (int kk = 0; kk < allowed; ++kk) {
      const float score = scale * Dot(q, k_tile + kk * d, d, lane);
      const float m_new = fmaxf(m, score);
      const float corr = expf(m - m_new);  // 0 while m is -inf
      const float p = expf(score - m_new);
      l = l * corr + p;
      m = m_new;
      const float* vr = v_tile + kk * d;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int c = lane + 32 * j;
        if (c < d) acc[j] = acc[j] * corr + p * vr[c];
      }
    }
  }
  if (!active) return;
  float* out = io.out.data + (s.q_begin + row) * io.out.ld + head * d;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int c = lane + 32 * j;
    if (c < d) out[c] = acc[j] * inv;
  }
  if (lane == 0) io.lse[head * io.lse_ld + s.q_begin + row] = l > 0.0f ? m + logf(l) : NegInf();
}

__global__ void DeltaKernel(AttentionDims dims, const AttentionSegment* segments,
                            const AttentionWork* work, StridedRows out, StridedRows dout,
                            float* delta, int64_t delta_ld) {
  const int d = dims.head_dim;
  const AttentionWork w = work[blockIdx.x];
  const AttentionSegment s = segments[w.segment];
  const int head = blockIdx.y;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = w.row0 + warp;
  if (row >= s.q_len) return;
  const int64_t r = s.q_begin + row;
  float o[kPerLane];
  LoadRow(out.data + r * out.ld + head * d, d, lane, o);
  const float v = Dot(o, dout.data + r * dout.ld + head * d, d, lane);
  if (lane == 0) delta[head * delta_ld + r] = v;
}

__global__ void BackwardQueryKernel(AttentionDims dims, const AttentionSegment* segments,
                                    const AttentionWork* work, AttentionIo io, StridedRows dout,
                                    const float* delta, int64_t delta_ld, StridedRows dq,
                                    float scale, bool causal, int tile_rows) {
  extern __shared__ float smem[];
  const int d = dims.head_dim;
  float* k_tile = smem;
  float* v_tile = smem + tile_rows * d;
  const AttentionWork w = work[blockIdx.x];
  const AttentionSegment s = segments[w.segment];
  const int head = blockIdx.y, kv = head / (dims.heads / dims.kv_heads);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = w.row0 + warp;
  const bool active = row < s.q_len;
  const int64_t last = min(static_cast<int64_t>(w.row0) + kWarps, s.q_len) - 1;
  const int64_t nk_block = VisibleKeys(s, last, causal);
  const int64_t nk = active ? VisibleKeys(s, row, causal) : 0;
  const int64_t r = s.q_begin + row;

  float q[kPerLane], go[kPerLane], acc[kPerLane];
  float lse = 0.0f, dl = 0.0f;
  if (active) {
    LoadRow(io.q.data + r * io.q.ld + head * d, d, lane, q);
    LoadRow(dout.data + r * dout.ld + head * d, d, lane, go);
    lse = io.lse[head * io.lse_ld + r];
    dl = delta[head * delta_ld + r];
  }
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) acc[j] = 0.0f;

  for (int64_t c0 = 0; c0 < nk_block; c0 += tile_rows) {
    const int rows = static_cast<int>(min(static_cast<int64_t>(tile_rows), nk_block - c0));
    __syncthreads();
    StageRows(k_tile, io.k.data, io.k.ld, s.k_begin + c0, rows, static_cast<int64_t>(kv) * d, d);
    StageRows(v_tile, io.v.data, io.v.ld, s.k_begin + c0, rows, static_cast<int64_t>(kv) * d, d);
    __syncthreads();
    const int64_t allowed = min(static_cast<int64_t>(rows), max(int64_t{0}, nk - c0));
    for (int kk = 0; kk < allowed; ++kk) {
      const float* kr = k_tile + kk * d;
      const float p = expf(scale * Dot(q, kr, d, lane) - lse);
      const float ds = p * (Dot(go, v_tile + kk * d, d, lane) - dl);
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int c = lane + 32 * j;
        if (c < d) acc[j] += ds * kr[c];
      }
    }
  }
  if (!active) return;
  float* out = dq.data + r * dq.ld + head * d;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int c = lane + 32 * j;
    if (c < d) out[c] += scale * acc[j];
  }
}

__global__ void BackwardKeyValueKernel(AttentionDims dims, const AttentionSegment* segments,
                                       const AttentionWork* work, AttentionIo io, StridedRows dout,
                                       const float* delta, int64_t delta_ld, StridedRows dk,
                                       StridedRows dv, float scale, bool causal, int tile_rows) {
  extern __shared__ float smem[];
  const int d = dims.head_dim;
  float* q_tile = smem;
  float* o_tile = smem + tile_rows * d;
  float* lse_tile = o_tile + tile_rows * d;
  float* delta_tile = lse_tile + tile_rows;
  const AttentionWork w = work[blockIdx.x];
  const AttentionSegment s = segments[w.segment];
  const int kv = blockIdx.y, group = dims.heads / dims.kv_heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t key = w.row0 + warp;  // segment-relative key row
  const bool active = key < s.k_len;
  // Query rows that see any key of this block start at the block's first key's first query.
  const int64_t first_block = FirstQuery(s, w.row0, causal);
  const int64_t first = active ? FirstQuery(s, key, causal) : s.q_len;
  const int64_t kr = s.k_begin + key;

  float k[kPerLane], v[kPerLane], dk_acc[kPerLane], dv_acc[kPerLane];
  if (active) {
    LoadRow(io.k.data + kr * io.k.ld + kv * d, d, lane, k);
    LoadRow(io.v.data + kr * io.v.ld + kv * d, d, lane, v);
  }
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) dk_acc[j] = dv_acc[j] = 0.0f;

  for (int h = kv * group; h < (kv + 1) * group; ++h) {
    for (int64_t i0 = first_block; i0 < s.q_len; i0 += tile_rows) {
      const int rows = static_cast<int>(min(static_cast<int64_t>(tile_rows), s.q_len - i0));
      __syncthreads();
      StageRows(q_tile, io.q.data, io.q.ld, s.q_begin + i0, rows, static_cast<int64_t>(h) * d, d);
      StageRows(o_tile, dout.data, dout.ld, s.q_begin + i0, rows, static_cast<int64_t>(h) * d, d);
      for (int idx = threadIdx.x; idx < rows; idx += blockDim.x) {
        lse_tile[idx] = io.lse[h * io.lse_ld + s.q_begin + i0 + idx];
        delta_tile[idx] = delta[h * delta_ld + s.q_begin + i0 + idx];
      }
      __syncthreads();
      const int begin =
          static_cast<int>(max(int64_t{0}, min(static_cast<int64_t>(rows), first - i0)));
      for (int ii = begin; ii < rows; ++ii) {
        const float* qr = q_tile + ii * d;
        const float* gr = o_tile + ii * d;
        const float p = expf(scale * Dot(k, qr, d, lane) - lse_tile[ii]);
        const float ds = p * (Dot(v, gr, d, lane) - delta_tile[ii]);
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) {
          const int c = lane + 32 * j;
          if (c < d) {
            dv_acc[j] += p * gr[c];
            dk_acc[j] += ds * qr[c];
          }
        }
      }
    }
  }
  if (!active) return;
  float* dk_row = dk.data + kr * dk.ld + kv * d;
  float* dv_row = dv.data + kr * dv.ld + kv * d;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int c = lane + 32 * j;
    if (c < d) {
      dk_row[c] += scale * dk_acc[j];
      dv_row[c] += dv_acc[j];
    }
  }
}

__global__ void MergeKernel(int heads, int d, int64_t rows, StridedRows out, float* lse,
                            int64_t lse_ld, StridedRows part, const float* part_lse,
                            int64_t part_lse_ld) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * heads) return;
  const int64_t r = idx / heads;
  const int h = static_cast<int>(idx % heads);
  const float a = lse[h * lse_ld + r], b = part_lse[h * part_lse_ld + r];
  if (b == NegInf()) return;
  float* o = out.data + r * out.ld + static_cast<int64_t>(h) * d;
  const float* p = part.data + r * part.ld + static_cast<int64_t>(h) * d;
  if (a == NegInf()) {
    for (int c = 0; c < d; ++c) o[c] = p[c];
    lse[h * lse_ld + r] = b;
    return;
  }
  const float m = fmaxf(a, b);
  const float wa = expf(a - m), wb = expf(b - m);
  const float sum = wa + wb;
  const float ca = wa / sum, cb = wb / sum;
  for (int c = 0; c < d; ++c) o[c] = o[c] * ca + p[c] * cb;
  lse[h * lse_ld + r] = m + logf(sum);
}

int TileRows(int d) {
  const int rows = kTileFloats / d;
  return rows > 128 ? 128 : rows;
}

void Check(const char* what) { SM_CHECK_CUDA(cudaGetLastError()) << "launching " << what; }

constexpr int kThreads = kWarps * 32;

}  // namespace

void LaunchAttentionForward(const AttentionDims& dims, const AttentionSegment* segments,
                            const AttentionWork* work, int64_t work_count, const AttentionIo& io,
                            float scale, bool causal, cudaStream_t stream) {
  if (work_count == 0) return;
  const int tile = TileRows(dims.head_dim);
  const size_t smem = 2 * sizeof(float) * tile * dims.head_dim;
  ForwardKernel<<<dim3(static_cast<unsigned>(work_count), dims.heads), kThreads, smem, stream>>>(
      dims, segments, work, io, scale, causal, tile);
  Check("AttentionForward");
}

void LaunchAttentionDelta(const AttentionDims& dims, const AttentionSegment* segments,
                          const AttentionWork* work, int64_t work_count, StridedRows out,
                          StridedRows dout, float* delta, int64_t delta_ld, cudaStream_t stream) {
  if (work_count == 0) return;
  DeltaKernel<<<dim3(static_cast<unsigned>(work_count), dims.heads), kThreads, 0, stream>>>(
      dims, segments, work, out, dout, delta, delta_ld);
  Check("AttentionBackward (delta)");
}

void LaunchAttentionBackwardQuery(const AttentionDims& dims, const AttentionSegment* segments,
                                  const AttentionWork* q_work, int64_t q_work_count,
                                  const AttentionIo& io, StridedRows dout, const float* delta,
                                  int64_t delta_ld, StridedRows dq, float scale, bool causal,
                                  cudaStream_t stream) {
  if (q_work_count == 0) return;
  const int tile = TileRows(dims.head_dim);
  const size_t smem = 2 * sizeof(float) * tile * dims.head_dim;
  BackwardQueryKernel<<<dim3(static_cast<unsigned>(q_work_count), dims.heads), kThreads, smem,
                        stream>>>(dims, segments, q_work, io, dout, delta, delta_ld, dq, scale,
                                  causal, tile);
  Check("AttentionBackward (dq)");
}

void LaunchAttentionBackwardKeyValue(const AttentionDims& dims, const AttentionSegment* segments,
                                     const AttentionWork* k_work, int64_t k_work_count,
                                     const AttentionIo& io, StridedRows dout, const float* delta,
                                     int64_t delta_ld, StridedRows dk, StridedRows dv, float scale,
                                     bool causal, cudaStream_t stream) {
  if (k_work_count == 0) return;
  const int tile = TileRows(dims.head_dim);
  const size_t smem = sizeof(float) * (2 * tile * dims.head_dim + 2 * tile);
  BackwardKeyValueKernel<<<dim3(static_cast<unsigned>(k_work_count), dims.kv_heads), kThreads, smem,
                           stream>>>(dims, segments, k_work, io, dout, delta, delta_ld, dk, dv,
                                     scale, causal, tile);
  Check("AttentionBackward (dk, dv)");
}

void LaunchAttentionMerge(const AttentionDims& dims, int64_t rows, StridedRows out, float* lse,
                          int64_t lse_ld, StridedRows part, const float* part_lse,
                          int64_t part_lse_ld, cudaStream_t stream) {
  const int64_t n = rows * dims.heads;
  if (n == 0) return;
  MergeKernel<<<Blocks(n, 256), 256, 0, stream>>>(dims.heads, dims.head_dim, rows, out, lse, lse_ld,
                                                  part, part_lse, part_lse_ld);
  Check("AttentionMerge");
}

}  // namespace seqmesh::cuda
