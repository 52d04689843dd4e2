#include "runtime/cuda/cuda_backend.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/cuda/cublaslt.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/stream.h"
#include "runtime/layers.h"

namespace seqmesh::cuda {
namespace {

// A device buffer that only grows (scratch for partial sums, flags and uploaded work lists).
// Growing waits for the stream first: the old buffer may still be read by queued kernels.
class Scratch {
 public:
  Scratch() = default;
  ~Scratch() {
    if (data_) cudaFree(data_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* Reserve(size_t bytes, const CudaStream& stream, const char* what) {
    if (bytes <= bytes_) return data_;
    stream.Synchronize();
    if (data_) cudaFree(data_);
    data_ = nullptr;
    bytes_ = 0;
    SM_CHECK_CUDA(cudaMalloc(&data_, bytes))
        << "allocating " << bytes << " bytes of device scratch for " << what;
    bytes_ = bytes;
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

enum Slot { kFlag, kRowLoss, kPartial, kWork, kDelta, kRound, kSlots };

// A tensor of `rows` rows of `cols` elements on the device, of dtype `dtype`.
void CheckRows(const Tensor& t, int64_t rows, int64_t cols, DType dtype = DType::kF32) {
  CheckDevice(t, Device::kCuda);
  CheckDType(t, dtype);
  SM_CHECK(t.shape().ndim() >= 1 && t.dim(0) == rows && t.numel() == rows * cols)
      << "tensor '" << t.name() << "' has shape " << t.shape().ToString() << ", expected " << rows
      << " rows of " << cols;
}

// `what` points to device memory (raw-pointer entries cannot carry a Tensor's device).
void CheckDevicePointer(const void* p, const char* what) {
  SM_CHECK(p != nullptr) << what << " is a null pointer; pass device memory";
  cudaPointerAttributes attr{};
  const cudaError_t e = cudaPointerGetAttributes(&attr, p);
  if (e != cudaSuccess) cudaGetLastError();
  SM_CHECK(e == cudaSuccess &&
           (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged))
      << what << " is not CUDA device memory (a host pointer?); pass a pointer into a "
      << "DeviceArena's tensor";
}

void CheckLinear(const Tensor& x, const Tensor& w, const Tensor& y, const char* op) {
  for (const Tensor* t : {&x, &w, &y}) CheckDevice(*t, Device::kCuda);
  SM_CHECK(x.shape().ndim() == 2 && w.shape().ndim() == 2 && y.shape().ndim() == 2)
      << op << ": '" << x.name() << "' " << x.shape().ToString() << ", '" << w.name() << "' "
      << w.shape().ToString() << ", '" << y.name() << "' " << y.shape().ToString()
      << " must all be 2-D";
}

// The operand type of a GEMM over a and b: both f32 or both bf16. `a_may_round`: a may be f32
// with b bf16 (the backward's dy, rounded to bf16 first, as runtime/cpu/matmul.cc does).
GemmInput InputOf(const Tensor& a, const Tensor& b, const char* op, bool a_may_round = false) {
  const bool rounds = a_may_round && a.dtype() == DType::kF32 && b.dtype() == DType::kBF16;
  SM_CHECK(rounds ||
           (a.dtype() == b.dtype() && (a.dtype() == DType::kF32 || a.dtype() == DType::kBF16)))
      << op << ": '" << a.name() << "' is " << DTypeName(a.dtype()) << " and '" << b.name()
      << "' is " << DTypeName(b.dtype()) << "; both must be f32, or both bf16";
  return b.dtype() == DType::kF32 ? GemmInput::kF32 : GemmInput::kBf16;
}

constexpr int64_t kNormChunk = 1 << 16;  // GlobalNorm's chunk, as the CPU's

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

struct CudaBackend::State {
  CudaStream stream;
  LtGemm gemm{stream.get()};
  Scratch scratch[kSlots];

  template <typename T>
  T* Get(Slot slot, size_t count, const char* what) {
    return static_cast<T*>(
        scratch[slot].Reserve(std::max<size_t>(count, 1) * sizeof(T), stream, what));
  }
  // Uploads `bytes` of host data into `slot` (stream-ordered; the host buffer may be reused on
  // return: pageable copies are staged before cudaMemcpyAsync returns).
  void* Upload(Slot slot, const void* host, size_t bytes, const char* what) {
    void* dst = scratch[slot].Reserve(std::max<size_t>(bytes, 1), stream, what);
    if (bytes > 0) {
      SM_CHECK_CUDA(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream.get()))
          << "uploading " << what;
    }
    return dst;
  }
  // `t` as a bf16 operand: itself when bf16, else rounded into scratch (runtime/dtype.h's rule).
  const void* AsBf16(const Tensor& t) {
    if (t.dtype() == DType::kBF16) return t.data();
    uint16_t* out = Get<uint16_t>(kRound, t.numel(), "a bf16 copy of the GEMM's dy");
    LaunchFloatToBf16(t.f32(), out, t.numel(), stream.get());
    return out;
  }
  void Download(void* host, const void* device, size_t bytes, const char* what) {
    SM_CHECK_CUDA(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream.get()))
        << "reading back " << what;
  }
};

CudaBackend::CudaBackend(const ExecutionContext& context) : ctx_(context) {
  ctx_.Validate();
  const std::string reason = UnavailableReason();
  SM_CHECK(reason.empty()) << "the CUDA backend cannot start: " << reason;
  SM_CHECK_CUDA(cudaSetDevice(0)) << "selecting CUDA device 0";
  state_ = std::make_unique<State>();
}

CudaBackend::~CudaBackend() = default;

void CudaBackend::Synchronize() { state_->stream.Synchronize(); }

void CudaBackend::Copy(const Tensor& dst, const Tensor& src) {
  CheckDevice(dst, Device::kCuda);
  CheckDevice(src, Device::kCuda);
  SM_CHECK(dst.shape() == src.shape())
      << "copy of '" << src.name() << "' " << src.shape().ToString() << " into '" << dst.name()
      << "' " << dst.shape().ToString();
  if (dst.dtype() == src.dtype()) {
    SM_CHECK_CUDA(cudaMemcpyAsync(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToDevice,
                                  state_->stream.get()))
        << "copying '" << src.name() << "'";
    return;
  }
  const bool narrow = src.dtype() == DType::kF32 && dst.dtype() == DType::kBF16;
  SM_CHECK(narrow || (src.dtype() == DType::kBF16 && dst.dtype() == DType::kF32))
      << "copy of '" << src.name() << "' (" << DTypeName(src.dtype()) << ") into '" << dst.name()
      << "' (" << DTypeName(dst.dtype()) << "): only f32 <-> bf16 converts";
  if (narrow)
    LaunchFloatToBf16(src.f32(), dst.bf16(), src.numel(), state_->stream.get());
  else
    LaunchBf16ToFloat(src.bf16(), dst.f32(), src.numel(), state_->stream.get());
}

void CudaBackend::Zero(const Tensor& t) {
  CheckDevice(t, Device::kCuda);
  SM_CHECK_CUDA(cudaMemsetAsync(t.data(), 0, t.bytes(), state_->stream.get()))
      << "zeroing '" << t.name() << "'";
}

void CudaBackend::LinearForward(const Tensor& x, const Tensor& w, const Tensor& y,
                                bool accumulate) {
  CheckLinear(x, w, y, "LinearForward");
  const int64_t t = x.dim(0), in = x.dim(1), out = w.dim(0);
  CheckShape(w, {out, in});
  CheckShape(y, {t, out});
  CheckDType(y, DType::kF32);
  const GemmInput input = InputOf(x, w, "LinearForward");
  state_->gemm.Run(false, true, t, out, in, 1.0f, x.data(), in, w.data(), in,
                   accumulate ? 1.0f : 0.0f, y.f32(), out, input);
}

void CudaBackend::LinearBackwardInput(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                      bool accumulate) {
  CheckLinear(dy, w, dx, "LinearBackwardInput");
  const int64_t t = dy.dim(0), out = dy.dim(1), in = w.dim(1);
  CheckShape(w, {out, in});
  CheckShape(dx, {t, in});
  CheckDType(dx, DType::kF32);
  const GemmInput input = InputOf(dy, w, "LinearBackwardInput", /*a_may_round=*/true);
  const void* a = input == GemmInput::kBf16 ? state_->AsBf16(dy) : dy.data();
  state_->gemm.Run(false, false, t, in, out, 1.0f, a, out, w.data(), in, accumulate ? 1.0f : 0.0f,
                   dx.f32(), in, input);
}

void CudaBackend::LinearBackwardWeight(const Tensor& dy, const Tensor& x, const Tensor& dw) {
  CheckLinear(dy, x, dw, "LinearBackwardWeight");
  const int64_t t = dy.dim(0), out = dy.dim(1), in = x.dim(1);
  CheckShape(x, {t, in});
  CheckShape(dw, {out, in});
  CheckDType(dw, DType::kF32);
  const GemmInput input = InputOf(dy, x, "LinearBackwardWeight", /*a_may_round=*/true);
  const void* a = input == GemmInput::kBf16 ? state_->AsBf16(dy) : dy.data();
  state_->gemm.Run(true, false, out, in, t, 1.0f, a, out, x.data(), in, 1.0f, dw.f32(), in, input);
}

void CudaBackend::EmbeddingForward(const Tensor& tokens, const Tensor& table, const Tensor& out) {
  const int64_t t = tokens.numel(), vocab = table.dim(0), hidden = table.dim(1);
  CheckRows(tokens, t, 1, DType::kI32);
  CheckRows(table, vocab, hidden);
  CheckRows(out, t, hidden);
  State& s = *state_;
  int32_t* bad = s.Get<int32_t>(kFlag, 2, "the token check");
  const int32_t none = INT_MAX;
  s.Upload(kFlag, &none, sizeof(none), "the token check");
  LaunchEmbeddingForward(tokens.i32(), t, table.f32(), vocab, hidden, out.f32(), bad,
                         s.stream.get());
  int32_t first_bad = INT_MAX;
  s.Download(&first_bad, bad, sizeof(first_bad), "the token check");
  s.stream.Synchronize();
  if (first_bad == INT_MAX) return;
  int32_t id = 0;
  SM_CHECK_CUDA(cudaMemcpy(&id, tokens.i32() + first_bad, sizeof(id), cudaMemcpyDeviceToHost));
  SM_CHECK(false) << "token id " << id << " at position " << first_bad
                  << " is outside the vocabulary [0, " << vocab << ")";
}

void CudaBackend::EmbeddingBackward(const Tensor& tokens, const Tensor& dout,
                                    const Tensor& dtable) {
  const int64_t t = tokens.numel(), hidden = dtable.dim(1);
  CheckRows(tokens, t, 1, DType::kI32);
  CheckRows(dout, t, hidden);
  CheckRows(dtable, dtable.dim(0), hidden);
  LaunchEmbeddingBackward(tokens.i32(), t, dout.f32(), hidden, dtable.f32(), state_->stream.get());
}

void CudaBackend::RmsNormForward(const Tensor& x, const Tensor& w, const Tensor& y,
                                 const Tensor& rstd, float eps) {
  const int64_t t = x.dim(0), n = w.numel();
  CheckRows(x, t, n);
  CheckRows(w, n, 1);
  CheckRows(y, t, n);
  CheckRows(rstd, t, 1);
  LaunchRmsNormForward(x.f32(), w.f32(), y.f32(), rstd.f32(), t, n, eps, state_->stream.get());
}

void CudaBackend::RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                  const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                                  bool accumulate) {
  const int64_t t = x.dim(0), n = w.numel();
  for (const Tensor* r : {&dy, &x, &dx}) CheckRows(*r, t, n);
  CheckRows(w, n, 1);
  CheckRows(dw, n, 1);
  CheckRows(rstd, t, 1);
  float* partial =
      state_->Get<float>(kPartial, CeilDiv(t, kRmsRowsPerBlock) * n, "RMSNorm's dw partials");
  LaunchRmsNormBackward(dy.f32(), x.f32(), w.f32(), rstd.f32(), dx.f32(), dw.f32(), partial, t, n,
                        accumulate, state_->stream.get());
}

void CudaBackend::RopeTable(const Tensor& positions, std::span<const double> inv_freq,
                            const Tensor& cos, const Tensor& sin) {
  const int64_t t = positions.numel();
  const int half = static_cast<int>(inv_freq.size());
  CheckRows(positions, t, 1, DType::kI32);
  CheckRows(cos, t, half);
  CheckRows(sin, t, half);
  const auto* freq = static_cast<const double*>(
      state_->Upload(kWork, inv_freq.data(), inv_freq.size_bytes(), "RoPE's frequencies"));
  LaunchRopeTable(positions.i32(), t, freq, half, cos.f32(), sin.f32(), state_->stream.get());
}

void CudaBackend::RopeApply(const Tensor& x, int64_t column, int heads, int head_dim,
                            const Tensor& cos, const Tensor& sin, bool inverse) {
  CheckDevice(x, Device::kCuda);
  CheckDType(x, DType::kF32);
  SM_CHECK(x.shape().ndim() == 2 && column >= 0 && column + heads * head_dim <= x.dim(1))
      << "RoPE over columns [" << column << ", " << column + heads * head_dim << ") of tensor '"
      << x.name() << "' " << x.shape().ToString();
  const int64_t t = x.dim(0);
  CheckRows(cos, t, head_dim / 2);
  CheckRows(sin, t, head_dim / 2);
  LaunchRopeApply(x.f32() + column, x.dim(1), t, heads, head_dim, cos.f32(), sin.f32(), inverse,
                  state_->stream.get());
}

void CudaBackend::SwiGluForward(const Tensor& gu, const Tensor& h) {
  const int64_t t = h.dim(0), f = h.numel() / std::max<int64_t>(t, 1);
  CheckRows(gu, t, 2 * f);
  CheckRows(h, t, f);
  LaunchSwiGluForward(gu.f32(), h.f32(), t, f, state_->stream.get());
}

void CudaBackend::SwiGluBackward(const Tensor& gu, const Tensor& dh, const Tensor& dgu) {
  const int64_t t = dh.dim(0), f = dh.numel() / std::max<int64_t>(t, 1);
  CheckRows(gu, t, 2 * f);
  CheckRows(dh, t, f);
  CheckRows(dgu, t, 2 * f);
  LaunchSwiGluBackward(gu.f32(), dh.f32(), dgu.f32(), t, f, state_->stream.get());
}

namespace {

void CheckAttention(const AttentionDims& dims, std::span<const AttentionSegment> segments) {
  dims.Validate();
  SM_CHECK(dims.head_dim <= kMaxAttentionHeadDim)
      << "head_dim " << dims.head_dim << " is larger than the CUDA attention kernels' "
      << kMaxAttentionHeadDim << "; use a model with head_dim <= " << kMaxAttentionHeadDim
      << " or the CPU backend";
  for (size_t i = 0; i < segments.size(); ++i) {
    const AttentionSegment& s = segments[i];
    SM_CHECK(s.q_begin >= 0 && s.q_len >= 0 && s.k_begin >= 0 && s.k_len >= 0)
        << "attention segment " << i << " has a negative row range";
    SM_CHECK(s.q_len <= INT32_MAX && s.k_len <= INT32_MAX)
        << "attention segment " << i << " is longer than 2^31 rows";
  }
}

// Blocks of kAttentionRowsPerBlock rows over each segment's query rows (or key rows).
std::vector<AttentionWork> WorkOver(std::span<const AttentionSegment> segments, bool keys) {
  std::vector<AttentionWork> work;
  for (size_t i = 0; i < segments.size(); ++i) {
    const int64_t len = keys ? segments[i].k_len : segments[i].q_len;
    for (int64_t r = 0; r < len; r += kAttentionRowsPerBlock)
      work.push_back({static_cast<int32_t>(i), static_cast<int32_t>(r)});
  }
  return work;
}

// segments, then the work lists, in one upload: returns device pointers to each.
struct Uploaded {
  const AttentionSegment* segments;
  const AttentionWork* q_work;
  const AttentionWork* k_work;
};

}  // namespace

void CudaBackend::AttentionForward(const AttentionDims& dims,
                                   std::span<const AttentionSegment> segments,
                                   const AttentionIo& io, float scale, bool causal) {
  CheckAttention(dims, segments);
  if (segments.empty()) return;
  CheckDevicePointer(io.q.data, "attention q");
  CheckDevicePointer(io.k.data, "attention k");
  CheckDevicePointer(io.v.data, "attention v");
  CheckDevicePointer(io.out.data, "attention out");
  CheckDevicePointer(io.lse, "attention lse");
  const std::vector<AttentionWork> work = WorkOver(segments, false);
  std::vector<char> host(segments.size_bytes() + work.size() * sizeof(AttentionWork));
  std::memcpy(host.data(), segments.data(), segments.size_bytes());
  std::memcpy(host.data() + segments.size_bytes(), work.data(),
              work.size() * sizeof(AttentionWork));
  char* dev = static_cast<char*>(state_->Upload(kWork, host.data(), host.size(), "attention"));
  LaunchAttentionForward(dims, reinterpret_cast<const AttentionSegment*>(dev),
                         reinterpret_cast<const AttentionWork*>(dev + segments.size_bytes()),
                         static_cast<int64_t>(work.size()), io, scale, causal,
                         state_->stream.get());
}

void CudaBackend::AttentionBackward(const AttentionDims& dims,
                                    std::span<const AttentionSegment> segments,
                                    const AttentionIo& io, StridedRows dout, StridedRows dq,
                                    StridedRows dk, StridedRows dv, float scale, bool causal) {
  CheckAttention(dims, segments);
  if (segments.empty()) return;
  CheckDevicePointer(io.q.data, "attention q");
  CheckDevicePointer(io.k.data, "attention k");
  CheckDevicePointer(io.v.data, "attention v");
  CheckDevicePointer(io.out.data, "attention out");
  CheckDevicePointer(io.lse, "attention lse");
  CheckDevicePointer(dout.data, "attention dout");
  CheckDevicePointer(dq.data, "attention dq");
  CheckDevicePointer(dk.data, "attention dk");
  CheckDevicePointer(dv.data, "attention dv");
  const std::vector<AttentionWork> q_work = WorkOver(segments, false);
  const std::vector<AttentionWork> k_work = WorkOver(segments, true);
  const size_t seg_bytes = segments.size_bytes();
  const size_t q_bytes = q_work.size() * sizeof(AttentionWork);
  std::vector<char> host(seg_bytes + q_bytes + k_work.size() * sizeof(AttentionWork));
  std::memcpy(host.data(), segments.data(), seg_bytes);
  std::memcpy(host.data() + seg_bytes, q_work.data(), q_bytes);
  std::memcpy(host.data() + seg_bytes + q_bytes, k_work.data(),
              k_work.size() * sizeof(AttentionWork));
  char* dev = static_cast<char*>(state_->Upload(kWork, host.data(), host.size(), "attention"));
  const Uploaded up{reinterpret_cast<const AttentionSegment*>(dev),
                    reinterpret_cast<const AttentionWork*>(dev + seg_bytes),
                    reinterpret_cast<const AttentionWork*>(dev + seg_bytes + q_bytes)};
  int64_t rows_end = 0;
  for (const AttentionSegment& s : segments) rows_end = std::max(rows_end, s.q_begin + s.q_len);
  float* delta =
      state_->Get<float>(kDelta, static_cast<size_t>(dims.heads) * rows_end, "attention delta");
  cudaStream_t st = state_->stream.get();
  const auto nq = static_cast<int64_t>(q_work.size()), nk = static_cast<int64_t>(k_work.size());
  LaunchAttentionDelta(dims, up.segments, up.q_work, nq, io.out, dout, delta, rows_end, st);
  LaunchAttentionBackwardQuery(dims, up.segments, up.q_work, nq, io, dout, delta, rows_end, dq,
                               scale, causal, st);
  LaunchAttentionBackwardKeyValue(dims, up.segments, up.k_work, nk, io, dout, delta, rows_end, dk,
                                  dv, scale, causal, st);
}

void CudaBackend::AttentionMerge(const AttentionDims& dims, int64_t rows, StridedRows out,
                                 float* lse, int64_t lse_ld, StridedRows part,
                                 const float* part_lse, int64_t part_lse_ld) {
  dims.Validate();
  if (rows == 0) return;
  CheckDevicePointer(out.data, "merge out");
  CheckDevicePointer(lse, "merge lse");
  CheckDevicePointer(part.data, "merge part");
  CheckDevicePointer(part_lse, "merge part_lse");
  LaunchAttentionMerge(dims, rows, out, lse, lse_ld, part, part_lse, part_lse_ld,
                       state_->stream.get());
}

void CudaBackend::Add(float* y, const float* x, int64_t n) {
  if (n == 0) return;
  CheckDevicePointer(y, "Add's y");
  CheckDevicePointer(x, "Add's x");
  LaunchAdd(y, x, n, state_->stream.get());
}

void CudaBackend::CopyRows(StridedRows dst, StridedRows src, int64_t rows, int64_t cols) {
  SM_CHECK(rows >= 0 && cols >= 0 && dst.ld >= cols && src.ld >= cols)
      << "CopyRows of " << rows << " x " << cols << " floats between rows " << src.ld << " and "
      << dst.ld << " floats apart";
  if (rows == 0 || cols == 0) return;
  CheckDevicePointer(dst.data, "CopyRows' dst");
  CheckDevicePointer(src.data, "CopyRows' src");
  SM_CHECK_CUDA(cudaMemcpy2DAsync(dst.data, dst.ld * sizeof(float), src.data,
                                  src.ld * sizeof(float), cols * sizeof(float), rows,
                                  cudaMemcpyDeviceToDevice, state_->stream.get()))
      << "CopyRows of " << rows << " x " << cols;
}

void CudaBackend::AddRows(StridedRows dst, StridedRows src, int64_t rows, int64_t cols,
                          float scale) {
  SM_CHECK(rows >= 0 && cols >= 0 && dst.ld >= cols && src.ld >= cols)
      << "AddRows of " << rows << " x " << cols << " floats between rows " << src.ld << " and "
      << dst.ld << " floats apart";
  if (rows == 0 || cols == 0) return;
  CheckDevicePointer(dst.data, "AddRows' dst");
  CheckDevicePointer(src.data, "AddRows' src");
  LaunchAddRows(dst.data, dst.ld, src.data, src.ld, rows, cols, scale, state_->stream.get());
}

void CudaBackend::Dropout(const Tensor& x, const Tensor& y, float p, uint64_t key) {
  CheckDevice(x, Device::kCuda);
  CheckDevice(y, Device::kCuda);
  CheckDType(x, DType::kF32);
  CheckDType(y, DType::kF32);
  SM_CHECK(x.shape() == y.shape())
      << "Dropout: tensor '" << y.name() << "' has shape " << y.shape().ToString() << ", '"
      << x.name() << "' has " << x.shape().ToString();
  SM_CHECK(p >= 0 && p < 1) << "Dropout: p must be in [0, 1), got " << p;
  LaunchDropout(x.f32(), y.f32(), x.numel(), p, key, state_->stream.get());
}

double CudaBackend::CrossEntropy(const Tensor& logits, const Tensor& targets, float grad_scale) {
  const int64_t t = targets.numel(), vocab = logits.shape().ndim() == 2 ? logits.dim(1) : 0;
  CheckRows(targets, t, 1, DType::kI32);
  CheckRows(logits, t, vocab);
  State& s = *state_;
  int32_t* bad = s.Get<int32_t>(kFlag, 2, "the target check");
  const int32_t none = INT_MAX;
  s.Upload(kFlag, &none, sizeof(none), "the target check");
  float* row_loss = s.Get<float>(kRowLoss, t, "the row losses");
  LaunchCrossEntropy(logits.f32(), targets.i32(), t, vocab, grad_scale, kIgnoreIndex, row_loss, bad,
                     s.stream.get());
  std::vector<float> loss(t);
  int32_t first_bad = INT_MAX;
  s.Download(loss.data(), row_loss, t * sizeof(float), "the row losses");
  s.Download(&first_bad, bad, sizeof(first_bad), "the target check");
  s.stream.Synchronize();
  if (first_bad != INT_MAX) {
    int32_t target = 0;
    SM_CHECK_CUDA(
        cudaMemcpy(&target, targets.i32() + first_bad, sizeof(target), cudaMemcpyDeviceToHost));
    SM_CHECK(false) << "target " << target << " at position " << first_bad
                    << " is outside the vocabulary [0, " << vocab
                    << ") and is not the ignore index " << kIgnoreIndex;
  }
  double sum = 0.0;  // in row order, as the CPU
  for (float l : loss) sum += l;
  return sum;
}

double CudaBackend::GlobalNorm(std::span<const Tensor> tensors) {
  std::vector<const float*> data;
  std::vector<int64_t> count;
  for (const Tensor& t : tensors) {
    CheckDevice(t, Device::kCuda);
    CheckDType(t, DType::kF32);
    for (int64_t b = 0; b < t.numel(); b += kNormChunk) {
      data.push_back(t.f32() + b);
      count.push_back(std::min(t.numel(), b + kNormChunk) - b);
    }
  }
  if (data.empty()) return 0.0;
  const size_t n = data.size();
  std::vector<char> host(n * (sizeof(const float*) + sizeof(int64_t)));
  std::memcpy(host.data(), data.data(), n * sizeof(const float*));
  std::memcpy(host.data() + n * sizeof(const float*), count.data(), n * sizeof(int64_t));
  State& s = *state_;
  char* dev = static_cast<char*>(s.Upload(kWork, host.data(), host.size(), "GlobalNorm's chunks"));
  double* partial = s.Get<double>(kPartial, n, "GlobalNorm's partial sums");
  LaunchSumSquares(reinterpret_cast<const float* const*>(dev),
                   reinterpret_cast<const int64_t*>(dev + n * sizeof(const float*)),
                   static_cast<int64_t>(n), partial, s.stream.get());
  std::vector<double> sums(n);
  s.Download(sums.data(), partial, n * sizeof(double), "GlobalNorm's partial sums");
  s.stream.Synchronize();
  double sum = 0.0;  // chunk order, as the CPU
  for (double p : sums) sum += p;
  return std::sqrt(sum);
}

void CudaBackend::AdamW(std::span<const AdamWRange> ranges) {
  for (const AdamWRange& r : ranges) {
    if (r.count == 0) continue;
    CheckDevicePointer(r.param, "AdamW's param");
    CheckDevicePointer(r.grad, "AdamW's grad");
    CheckDevicePointer(r.m, "AdamW's m");
    CheckDevicePointer(r.v, "AdamW's v");
  }
  for (const AdamWRange& r : ranges)
    LaunchAdamW(r.param, r.grad, r.m, r.v, r.count, r.step, state_->stream.get());
}

}  // namespace seqmesh::cuda
