// Backend: where compute runs. Every kernel the model and the optimizer use goes through this one
// interface; runtime/cpu/ is its first implementation (CpuBackend) and the CUDA issue adds
// runtime/cuda/ (DESIGN.md section 8). The model never includes runtime/cpu/.
//
// Invariants every implementation keeps:
//   - Entry points that take a Tensor check its device first (CheckDevice) and name the tensor;
//     entry points over raw pointers (attention, which works on strided column slices) take
//     pointers into tensors the caller checked once (the model checks its arenas at
//     construction: Model::Model).
//   - Results do not depend on context().threads (work is split by shape, never by thread
//     count), so the same inputs give the same bits on 1 or N threads.
//   - Shapes are those of the model's views: T rows of the micro-batch, H = hidden, F = ffn,
//     V = vocab. Entry points with `accumulate` add (+=) instead of writing.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "runtime/adamw_step.h"
#include "runtime/attention.h"
#include "runtime/device.h"
#include "runtime/dropout_hash.h"
#include "runtime/execution_context.h"
#include "runtime/tensor.h"

namespace seqmesh {

// One contiguous range of a fused AdamW update: p, g, m, v of `count` elements.
struct AdamWRange {
  float* param = nullptr;
  const float* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  int64_t count = 0;
  AdamWStep step{};
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual const ExecutionContext& context() const = 0;

  // Memory of tensors on this device: dst = src (same shape; f32 <-> bf16 converts, rounding to
  // nearest even), t = 0.
  virtual void Copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void Zero(const Tensor& t) = 0;

  // Linear layers, weights in the PyTorch layout W (out, in). With W (and x) in bf16 the products
  // run in bf16 with fp32 accumulation into the f32 output (training.precision = "bf16"); the f32
  // dy of the backward entries is rounded to bf16 for its GEMM, as autocast does.
  //   y (T, out)  = x (T, in) W^T     (+= if accumulate)   LinearForward
  //   dx (T, in)  = dy (T, out) W     (+= if accumulate)   LinearBackwardInput
  //   dW (out,in) += dy^T x                                LinearBackwardWeight
  virtual void LinearForward(const Tensor& x, const Tensor& w, const Tensor& y,
                             bool accumulate) = 0;
  virtual void LinearBackwardInput(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                   bool accumulate) = 0;
  virtual void LinearBackwardWeight(const Tensor& dy, const Tensor& x, const Tensor& dw) = 0;

  // out (T, H) = table[tokens (T) i32], table (V, H); ids outside [0, V) are an error.
  virtual void EmbeddingForward(const Tensor& tokens, const Tensor& table, const Tensor& out) = 0;
  // dtable[tokens[i]] += dout[i].
  virtual void EmbeddingBackward(const Tensor& tokens, const Tensor& dout,
                                 const Tensor& dtable) = 0;

  // y (T, H) = w (H) * x / sqrt(mean(x^2) + eps) per row; rstd (T) saved for backward.
  virtual void RmsNormForward(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& rstd,
                              float eps) = 0;
  // dx (= or += when accumulate), dw += (reduced over rows in a fixed order).
  virtual void RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w,
                               const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                               bool accumulate) = 0;

  // cos, sin (T, head_dim/2) for positions (T) i32 and the head_dim/2 inverse frequencies
  // (runtime/rope.h: plain or scaled, as Hugging Face computes them).
  virtual void RopeTable(const Tensor& positions, std::span<const double> inv_freq,
                         const Tensor& cos, const Tensor& sin) = 0;
  // Rotates, in place, `heads` heads of head_dim columns starting at column `column` of every
  // row of x (T, width); inverse applies the transpose rotation (backward).
  virtual void RopeApply(const Tensor& x, int64_t column, int heads, int head_dim,
                         const Tensor& cos, const Tensor& sin, bool inverse) = 0;

  // gu (T, 2F) = [gate | up] per row; h (T, F) = silu(gate) * up.
  virtual void SwiGluForward(const Tensor& gu, const Tensor& h) = 0;
  // dgu (T, 2F) from dh (T, F).
  virtual void SwiGluBackward(const Tensor& gu, const Tensor& dh, const Tensor& dgu) = 0;

  // Flash attention over segments (runtime/attention.h has the layout and the contract).
  virtual void AttentionForward(const AttentionDims& dims,
                                std::span<const AttentionSegment> segments, const AttentionIo& io,
                                float scale, bool causal = true) = 0;
  // Accumulates (+=) into dq, dk, dv.
  virtual void AttentionBackward(const AttentionDims& dims,
                                 std::span<const AttentionSegment> segments, const AttentionIo& io,
                                 StridedRows dout, StridedRows dq, StridedRows dk, StridedRows dv,
                                 float scale, bool causal = true) = 0;
  // Merges a partial result into a running one (ring attention's steps; runtime/attention.h).
  virtual void AttentionMerge(const AttentionDims& dims, int64_t rows, StridedRows out, float* lse,
                              int64_t lse_ld, StridedRows part, const float* part_lse,
                              int64_t part_lse_ld) = 0;
  // y[i] += x[i] over n floats (ring attention adds received gradient blocks).
  virtual void Add(float* y, const float* x, int64_t n) = 0;
  // Row r of dst = row r of src over `cols` floats, r in [0, rows): the KV cache appends the k and
  // v column slices of the fused qkv rows this way (runtime/kv_cache.h).
  virtual void CopyRows(StridedRows dst, StridedRows src, int64_t rows, int64_t cols) = 0;
  // Row r of dst += scale * row r of src over `cols` floats (LoRA adds its low-rank update into
  // column slices of the fused q|k|v and gate|up rows this way).
  virtual void AddRows(StridedRows dst, StridedRows src, int64_t rows, int64_t cols,
                       float scale) = 0;
  // Inverted dropout, y = x * keep / (1 - p) elementwise over the (rows, cols) tensors x and y
  // (y may be x): element (r, c) is kept when DropoutUniform(key, r * cols + c) >= p
  // (runtime/dropout_hash.h). The mask is a pure function of (key, r, c), so the backward pass
  // applies the same mask again from the key (nothing is stored) and the result does not depend on
  // the thread count.
  virtual void Dropout(const Tensor& x, const Tensor& y, float p, uint64_t key) = 0;

  // Softmax cross-entropy over logits (T, V) in place with targets (T) i32: returns the sum of
  // the token losses (in double, in row order) and leaves d(loss_sum * grad_scale)/d(logits).
  virtual double CrossEntropy(const Tensor& logits, const Tensor& targets, float grad_scale) = 0;

  // sqrt(sum of squares) over all tensors, accumulated in double in a fixed order.
  virtual double GlobalNorm(std::span<const Tensor> tensors) = 0;
  // The fused AdamW update of every range (ranges never overlap).
  virtual void AdamW(std::span<const AdamWRange> ranges) = 0;
};

// How bf16 matrix multiplications (training.precision = "bf16") run on `device`, for the one
// line a run prints: e.g. "oneDNN brg:avx512_core_amx_bf16", or, where the CPU has neither
// AVX512-BF16 nor AMX, "emulated: ..." (correct, but slower than fp32).
std::string DescribeBf16Matmul(Device device);

// The backend for `device` with `context`: Device::kCpu is runtime/cpu/'s CpuBackend,
// Device::kCuda runtime/cuda/'s CudaBackend. A device this build or machine cannot use fails with
// "device cuda: " and DeviceUnavailableReason's line.
std::shared_ptr<Backend> MakeBackend(Device device, const ExecutionContext& context);

// "" when MakeBackend(device) can work in this process, else one line naming the problem and the
// fix: "built without CUDA: ..." or "no CUDA device: cudaGetDeviceCount returned ...".
std::string DeviceUnavailableReason(Device device);

// Where a run computes when training.device asks for `requested`. Today that is always the CPU:
// the model's weights and activations are host arenas, so a run asking for "cuda" runs on CPU and
// `note` (one line, printed once by the caller) says why. `note` is empty when the request is met.
struct DeviceChoice {
  Device device = Device::kCpu;
  std::string note;
};
DeviceChoice ChooseComputeDevice(Device requested);

}  // namespace seqmesh
