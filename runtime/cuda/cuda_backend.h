// CudaBackend: the Backend (runtime/backend.h) on CUDA device memory, fp32 (DESIGN.md section 8).
// GEMMs through cuBLASLt (fp32 inputs: IEEE fp32; bf16 weights: bf16 x bf16 -> f32 on tensor
// cores, an f32 dy rounded to bf16 first as the CPU does), the row-wise kernels, cross-entropy, the
// global norm and AdamW in runtime/cuda/*.cu, and the deterministic fp32 flash attention of
// runtime/cuda/attention.cu.
//
// Every kernel is enqueued in call order on the backend's one compute stream, on CUDA device 0.
// Calls return before the work is done, except those that return a value or check one on the
// device (CrossEntropy, GlobalNorm, EmbeddingForward's token check), which synchronize the stream;
// Synchronize() waits for everything (before the host reads device memory).
//
// Every entry point checks that its tensors are on Device::kCuda with the dtype it needs and
// names the tensor; raw-pointer entries (attention, Add, CopyRows, AdamW) check that each pointer
// is device memory. Results do not depend on launch timing: no float atomics anywhere.
//
// Plain C++ header (no CUDA includes): runtime/backend.cc constructs it.
#pragma once

#include <memory>

#include "runtime/backend.h"

namespace seqmesh::cuda {

class CudaBackend final : public Backend {
 public:
  // Fails with one line naming the problem when no CUDA device can be used (cuda_device.h).
  explicit CudaBackend(const ExecutionContext& context);
  ~CudaBackend() override;

  Device device() const override { return Device::kCuda; }
  const ExecutionContext& context() const override { return ctx_; }
  // Blocks until every call so far has run; an asynchronous kernel error surfaces here.
  void Synchronize();

  void Copy(const Tensor& dst, const Tensor& src) override;
  void Zero(const Tensor& t) override;

  void LinearForward(const Tensor& x, const Tensor& w, const Tensor& y, bool accumulate) override;
  void LinearBackwardInput(const Tensor& dy, const Tensor& w, const Tensor& dx,
                           bool accumulate) override;
  void LinearBackwardWeight(const Tensor& dy, const Tensor& x, const Tensor& dw) override;

  void EmbeddingForward(const Tensor& tokens, const Tensor& table, const Tensor& out) override;
  void EmbeddingBackward(const Tensor& tokens, const Tensor& dout, const Tensor& dtable) override;
  void RmsNormForward(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& rstd,
                      float eps) override;
  void RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                       const Tensor& dx, const Tensor& dw, bool accumulate) override;
  void RopeTable(const Tensor& positions, std::span<const double> inv_freq, const Tensor& cos,
                 const Tensor& sin) override;
  void RopeApply(const Tensor& x, int64_t column, int heads, int head_dim, const Tensor& cos,
                 const Tensor& sin, bool inverse) override;
  void SwiGluForward(const Tensor& gu, const Tensor& h) override;
  void SwiGluBackward(const Tensor& gu, const Tensor& dh, const Tensor& dgu) override;

  void AttentionForward(const AttentionDims& dims, std::span<const AttentionSegment> segments,
                        const AttentionIo& io, float scale, bool causal) override;
  void AttentionBackward(const AttentionDims& dims, std::span<const AttentionSegment> segments,
                         const AttentionIo& io, StridedRows dout, StridedRows dq, StridedRows dk,
                         StridedRows dv, float scale, bool causal) override;
  void AttentionMerge(const AttentionDims& dims, int64_t rows, StridedRows out, float* lse,
                      int64_t lse_ld, StridedRows part, const float* part_lse,
                      int64_t part_lse_ld) override;
  void Add(float* y, const float* x, int64_t n) override;
  void CopyRows(StridedRows dst, StridedRows src, int64_t rows, int64_t cols) override;
  void AddRows(StridedRows dst, StridedRows src, int64_t rows, int64_t cols, float scale) override;
  void Dropout(const Tensor& x, const Tensor& y, float p, uint64_t key) override;

  double CrossEntropy(const Tensor& logits, const Tensor& targets, float grad_scale) override;
  double GlobalNorm(std::span<const Tensor> tensors) override;
  void AdamW(std::span<const AdamWRange> ranges) override;

 private:
  struct State;
  ExecutionContext ctx_;
  std::unique_ptr<State> state_;
};

}  // namespace seqmesh::cuda
