#include "runtime/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/cpu/attention.h"
#include "runtime/cpu/layers.h"
#include "runtime/cpu/matmul.h"
#include "runtime/cpu/vec.h"

namespace seqmesh {
namespace {

// A tensor of `rows` rows of `cols` floats (or `cols` columns of a wider row: ld >= cols).
void CheckRows(const Tensor& t, int64_t rows, int64_t cols) {
  CheckDevice(t, Device::kCpu);
  SM_CHECK(t.shape().ndim() >= 1 && t.dim(0) == rows && t.numel() == rows * cols)
      << "tensor '" << t.name() << "' has shape " << t.shape().ToString() << ", expected " << rows
      << " rows of " << cols;
}

// Reductions are cut into chunks of whole tensors' ranges so every thread gets similar work and
// the order of a reduction does not depend on the thread count.
constexpr int64_t kChunk = 1 << 16;

}  // namespace

CpuBackend::CpuBackend(const ExecutionContext& context) : ctx_(context) { ctx_.Validate(); }

void CpuBackend::Copy(const Tensor& dst, const Tensor& src) {
  CheckDevice(dst, Device::kCpu);
  CheckDevice(src, Device::kCpu);
  SM_CHECK(dst.shape() == src.shape())
      << "copy of '" << src.name() << "' " << src.shape().ToString() << " into '" << dst.name()
      << "' " << dst.shape().ToString();
  if (dst.dtype() == src.dtype()) {
    std::memcpy(dst.data(), src.data(), src.bytes());
    return;
  }
  const bool narrow = src.dtype() == DType::kF32 && dst.dtype() == DType::kBF16;
  SM_CHECK(narrow || (src.dtype() == DType::kBF16 && dst.dtype() == DType::kF32))
      << "copy of '" << src.name() << "' (" << DTypeName(src.dtype()) << ") into '" << dst.name()
      << "' (" << DTypeName(dst.dtype()) << "): only f32 <-> bf16 converts";
  // Chunks of a fixed size: the conversion is elementwise, the split only spreads the work.
  const int64_t n = src.numel(), chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(ctx_.threads)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * kChunk, len = std::min(n, b + kChunk) - b;
    if (narrow)
      FloatToBf16(src.f32() + b, dst.bf16() + b, static_cast<size_t>(len));
    else
      Bf16ToFloat(src.bf16() + b, dst.f32() + b, static_cast<size_t>(len));
  }
}

void CpuBackend::Zero(const Tensor& t) {
  CheckDevice(t, Device::kCpu);
  std::memset(t.data(), 0, t.bytes());
}

void CpuBackend::LinearForward(const Tensor& x, const Tensor& w, const Tensor& y, bool accumulate) {
  for (const Tensor* t : {&x, &w, &y}) CheckDevice(*t, Device::kCpu);
  seqmesh::LinearForward(x, w, y, accumulate, ctx_);
}

void CpuBackend::LinearBackwardInput(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                     bool accumulate) {
  for (const Tensor* t : {&dy, &w, &dx}) CheckDevice(*t, Device::kCpu);
  seqmesh::LinearBackwardInput(dy, w, dx, accumulate, ctx_);
}

void CpuBackend::LinearBackwardWeight(const Tensor& dy, const Tensor& x, const Tensor& dw) {
  for (const Tensor* t : {&dy, &x, &dw}) CheckDevice(*t, Device::kCpu);
  seqmesh::LinearBackwardWeight(dy, x, dw, ctx_);
}

void CpuBackend::EmbeddingForward(const Tensor& tokens, const Tensor& table, const Tensor& out) {
  const int64_t t = tokens.numel(), vocab = table.dim(0), hidden = table.dim(1);
  CheckRows(tokens, t, 1);
  CheckRows(table, vocab, hidden);
  CheckRows(out, t, hidden);
  seqmesh::EmbeddingForward(tokens.i32(), t, table.f32(), vocab, hidden, out.f32(), ctx_);
}

void CpuBackend::EmbeddingBackward(const Tensor& tokens, const Tensor& dout, const Tensor& dtable) {
  const int64_t t = tokens.numel(), hidden = dtable.dim(1);
  CheckRows(tokens, t, 1);
  CheckRows(dout, t, hidden);
  CheckDevice(dtable, Device::kCpu);
  seqmesh::EmbeddingBackward(tokens.i32(), t, dout.f32(), hidden, dtable.f32(), ctx_);
}

void CpuBackend::RmsNormForward(const Tensor& x, const Tensor& w, const Tensor& y,
                                const Tensor& rstd, float eps) {
  const int64_t t = x.dim(0), n = w.numel();
  CheckRows(x, t, n);
  CheckRows(w, n, 1);
  CheckRows(y, t, n);
  CheckRows(rstd, t, 1);
  seqmesh::RmsNormForward(x.f32(), w.f32(), y.f32(), rstd.f32(), t, n, eps, ctx_);
}

void CpuBackend::RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                 const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                                 bool accumulate) {
  const int64_t t = x.dim(0), n = w.numel();
  for (const Tensor* r : {&dy, &x, &dx}) CheckRows(*r, t, n);
  CheckRows(w, n, 1);
  CheckRows(dw, n, 1);
  CheckRows(rstd, t, 1);
  seqmesh::RmsNormBackward(dy.f32(), x.f32(), w.f32(), rstd.f32(), dx.f32(), dw.f32(), t, n,
                           accumulate, ctx_);
}

void CpuBackend::RopeTable(const Tensor& positions, std::span<const double> inv_freq,
                           const Tensor& cos, const Tensor& sin) {
  const int64_t t = positions.numel();
  const int half = static_cast<int>(inv_freq.size());
  CheckRows(positions, t, 1);
  CheckRows(cos, t, half);
  CheckRows(sin, t, half);
  seqmesh::RopeTable(positions.i32(), t, inv_freq.data(), half, cos.f32(), sin.f32(), ctx_);
}

void CpuBackend::RopeApply(const Tensor& x, int64_t column, int heads, int head_dim,
                           const Tensor& cos, const Tensor& sin, bool inverse) {
  CheckDevice(x, Device::kCpu);
  SM_CHECK(x.shape().ndim() == 2 && column >= 0 && column + heads * head_dim <= x.dim(1))
      << "RoPE over columns [" << column << ", " << column + heads * head_dim << ") of tensor '"
      << x.name() << "' " << x.shape().ToString();
  const int64_t t = x.dim(0);
  CheckRows(cos, t, head_dim / 2);
  CheckRows(sin, t, head_dim / 2);
  seqmesh::RopeApply(x.f32() + column, x.dim(1), t, heads, head_dim, cos.f32(), sin.f32(), inverse,
                     ctx_);
}

void CpuBackend::SwiGluForward(const Tensor& gu, const Tensor& h) {
  const int64_t t = h.dim(0), f = h.numel() / std::max<int64_t>(t, 1);
  CheckRows(gu, t, 2 * f);
  CheckRows(h, t, f);
  seqmesh::SwiGluForward(gu.f32(), h.f32(), t, f, ctx_);
}

void CpuBackend::SwiGluBackward(const Tensor& gu, const Tensor& dh, const Tensor& dgu) {
  const int64_t t = dh.dim(0), f = dh.numel() / std::max<int64_t>(t, 1);
  CheckRows(gu, t, 2 * f);
  CheckRows(dh, t, f);
  CheckRows(dgu, t, 2 * f);
  seqmesh::SwiGluBackward(gu.f32(), dh.f32(), dgu.f32(), t, f, ctx_);
}

void CpuBackend::AttentionForward(const AttentionDims& dims,
                                  std::span<const AttentionSegment> segments, const AttentionIo& io,
                                  float scale, bool causal) {
  seqmesh::AttentionForward(dims, segments, io, scale, causal, ctx_);
}

void CpuBackend::AttentionBackward(const AttentionDims& dims,
                                   std::span<const AttentionSegment> segments,
                                   const AttentionIo& io, StridedRows dout, StridedRows dq,
                                   StridedRows dk, StridedRows dv, float scale, bool causal) {
  seqmesh::AttentionBackward(dims, segments, io, dout, dq, dk, dv, scale, causal, ctx_);
}

void CpuBackend::AttentionMerge(const AttentionDims& dims, int64_t rows, StridedRows out,
                                float* lse, int64_t lse_ld, StridedRows part, const float* part_lse,
                                int64_t part_lse_ld) {
  seqmesh::AttentionMerge(dims, rows, out, lse, lse_ld, part, part_lse, part_lse_ld, ctx_);
}

void CpuBackend::Add(float* y, const float* x, int64_t n) { cpu::Vec().add(y, x, n); }

void CpuBackend::CopyRows(StridedRows dst, StridedRows src, int64_t rows, int64_t cols) {
  SM_CHECK(rows >= 0 && cols >= 0 && dst.ld >= cols && src.ld >= cols)
      << "CopyRows of " << rows << " x " << cols << " floats between rows " << src.ld << " and "
      << dst.ld << " floats apart";
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst.data + r * dst.ld, src.data + r * src.ld, cols * sizeof(float));
}

void CpuBackend::AddRows(StridedRows dst, StridedRows src, int64_t rows, int64_t cols,
                         float scale) {
  SM_CHECK(rows >= 0 && cols >= 0 && dst.ld >= cols && src.ld >= cols)
      << "AddRows of " << rows << " x " << cols << " floats between rows " << src.ld << " and "
      << dst.ld << " floats apart";
#pragma omp parallel for schedule(static) num_threads(ctx_.threads)
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst.data + r * dst.ld;
    const float* s = src.data + r * src.ld;
    for (int64_t c = 0; c < cols; ++c) d[c] += scale * s[c];
  }
}

void CpuBackend::Dropout(const Tensor& x, const Tensor& y, float p, uint64_t key) {
  CheckDevice(x, Device::kCpu);
  CheckDevice(y, Device::kCpu);
  CheckDType(x, DType::kF32);
  CheckDType(y, DType::kF32);
  SM_CHECK(x.shape() == y.shape())
      << "Dropout: tensor '" << y.name() << "' has shape " << y.shape().ToString() << ", '"
      << x.name() << "' has " << x.shape().ToString();
  SM_CHECK(p >= 0 && p < 1) << "Dropout: p must be in [0, 1), got " << p;
  const float keep_scale = 1.0f / (1.0f - p);
  const int64_t n = x.numel();
  const float* in = x.f32();
  float* out = y.f32();
#pragma omp parallel for schedule(static) num_threads(ctx_.threads)
  for (int64_t i = 0; i < n; ++i)
    out[i] = DropoutUniform(key, static_cast<uint64_t>(i)) >= p ? in[i] * keep_scale : 0.0f;
}

double CpuBackend::CrossEntropy(const Tensor& logits, const Tensor& targets, float grad_scale) {
  const int64_t t = targets.numel(), vocab = logits.shape().ndim() == 2 ? logits.dim(1) : 0;
  CheckRows(targets, t, 1);
  CheckRows(logits, t, vocab);
  return CrossEntropyForwardBackward(logits.f32(), targets.i32(), t, vocab, grad_scale, ctx_);
}

double CpuBackend::GlobalNorm(std::span<const Tensor> tensors) {
  // Checked before the parallel loop: an exception cannot leave an OpenMP region.
  struct Chunk {
    const float* data;
    int64_t count;
  };
  std::vector<Chunk> chunks;
  for (const Tensor& t : tensors) {
    CheckDevice(t, Device::kCpu);
    CheckDType(t, DType::kF32);
    for (int64_t b = 0; b < t.numel(); b += kChunk)
      chunks.push_back({t.f32() + b, std::min(t.numel(), b + kChunk) - b});
  }
  std::vector<double> partial(chunks.size());
  const int64_t n = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(static) num_threads(ctx_.threads)
  for (int64_t i = 0; i < n; ++i)
    partial[i] = cpu::Vec().sum_squares(chunks[i].data, chunks[i].count);
  double sum = 0.0;
  for (double p : partial) sum += p;
  return std::sqrt(sum);
}

void CpuBackend::AdamW(std::span<const AdamWRange> ranges) {
  const int64_t n = static_cast<int64_t>(ranges.size());
#pragma omp parallel for schedule(static) num_threads(ctx_.threads)
  for (int64_t i = 0; i < n; ++i) {
    const AdamWRange& r = ranges[i];
    cpu::Vec().adamw(r.param, r.grad, r.m, r.v, r.count, r.step);
  }
}

}  // namespace seqmesh
