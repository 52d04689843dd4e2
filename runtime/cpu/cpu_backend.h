// CpuBackend: the Backend (runtime/backend.h) on host memory: oneDNN sgemm in shape-chosen tiles
// (matmul.h), flash attention (attention.h), the row-wise kernels (layers.h) and the vectorized
// AdamW and norms (vec.h), each on context().threads OpenMP threads.
#pragma once

#include "runtime/backend.h"

namespace seqmesh {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const ExecutionContext& context);

  Device device() const override { return Device::kCpu; }
  const ExecutionContext& context() const override { return ctx_; }

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
  ExecutionContext ctx_;
};

}  // namespace seqmesh
