#include "runtime/cpu/matmul.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <vector>

#include "runtime/cpu/gemm_tiles.h"
#include "runtime/dtype.h"

namespace seqmesh {

namespace {

// One oneDNN sgemm call, single-threaded. The caller is always inside an OpenMP region: in an
// active one oneDNN does not nest; in an inactive one (a team of one thread) oneDNN would read
// the thread count from the nthreads ICV, so it is set to 1 here for this region's task only
// (it ends with the region and never reaches the caller's thread or any other).
void SgemmTile(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc) {
  if (!omp_in_parallel()) omp_set_num_threads(1);
  SM_CHECK_DNNL(dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                           beta, c, ldc))
      << "sgemm M=" << m << " N=" << n << " K=" << k;
}

}  // namespace

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
          const ExecutionContext& ctx) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // oneDNN rejects K = 0; the product is empty, so C = beta * C.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  // Inside a parallel region (active or not: a team of one thread counts too) the caller has
  // already cut the work by something other than the thread count (attention's key blocks), and
  // sgemm runs single-threaded there.
  if (omp_get_level() > 0) {
    SgemmTile(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  TiledGemm(trans_a, trans_b, m, n, a, lda, b, ldb, c, ldc, ctx,
            [&](int64_t mt, int64_t nt, const float* at, const float* bt, float* ct) {
              SgemmTile(trans_a, trans_b, mt, nt, k, alpha, at, lda, bt, ldb, beta, ct, ldc);
            });
}

namespace {
void CheckLinear(const Tensor& x, const Tensor& w, const Tensor& y, const char* op) {
  SM_CHECK(x.shape().ndim() == 2 && w.shape().ndim() == 2 && y.shape().ndim() == 2)
      << op << ": '" << x.name() << "' " << x.shape().ToString() << ", '" << w.name() << "' "
      << w.shape().ToString() << ", '" << y.name() << "' " << y.shape().ToString()
      << " must all be 2-D";
}
}  // namespace

namespace {
// dy is rounded to bf16 for a bf16 GEMM this many rows at a time, into a buffer of this thread's:
// the logits' gradient of a 2048-token micro-batch over a 32K vocabulary would otherwise need a
// 128 MiB copy. The block size is fixed, so the results do not depend on anything else.
constexpr int64_t kRoundRows = 512;

const uint16_t* RoundRows(const Tensor& dy, int64_t first, int64_t rows,
                          const ExecutionContext& ctx) {
  thread_local std::vector<uint16_t> buffer;
  const int64_t cols = dy.dim(1), n = rows * cols;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(n);
  constexpr int64_t kChunk = 1 << 16;
  const float* src = dy.f32() + first * cols;
  uint16_t* dst = buffer.data();
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t b = 0; b < n; b += kChunk)
    FloatToBf16(src + b, dst + b, static_cast<size_t>(std::min(n, b + kChunk) - b));
  return dst;
}
}  // namespace

void LinearForward(const Tensor& x, const Tensor& w, const Tensor& y, bool accumulate,
                   const ExecutionContext& ctx) {
  CheckLinear(x, w, y, "LinearForward");
  const int64_t t = x.dim(0), in = x.dim(1), out = w.dim(0);
  CheckShape(w, {out, in});
  CheckShape(y, {t, out});
  if (w.dtype() == DType::kBF16) {
    CheckDType(x, DType::kBF16);
    GemmBf16(false, true, t, out, in, 1.0f, x.bf16(), in, w.bf16(), in, accumulate ? 1.0f : 0.0f,
             y.f32(), out, ctx);
    return;
  }
  Gemm(false, true, t, out, in, 1.0f, x.f32(), in, w.f32(), in, accumulate ? 1.0f : 0.0f, y.f32(),
       out, ctx);
}

void LinearBackwardInput(const Tensor& dy, const Tensor& w, const Tensor& dx, bool accumulate,
                         const ExecutionContext& ctx) {
  CheckLinear(dy, w, dx, "LinearBackwardInput");
  const int64_t t = dy.dim(0), out = dy.dim(1), in = w.dim(1);
  CheckShape(w, {out, in});
  CheckShape(dx, {t, in});
  if (w.dtype() == DType::kBF16) {
    for (int64_t r = 0; r < t; r += kRoundRows) {  // rows of dx are independent
      const int64_t rows = std::min(kRoundRows, t - r);
      GemmBf16(false, false, rows, in, out, 1.0f, RoundRows(dy, r, rows, ctx), out, w.bf16(), in,
               accumulate ? 1.0f : 0.0f, dx.f32() + r * in, in, ctx);
    }
    return;
  }
  Gemm(false, false, t, in, out, 1.0f, dy.f32(), out, w.f32(), in, accumulate ? 1.0f : 0.0f,
       dx.f32(), in, ctx);
}

void LinearBackwardWeight(const Tensor& dy, const Tensor& x, const Tensor& dw,
                          const ExecutionContext& ctx) {
  CheckLinear(dy, x, dw, "LinearBackwardWeight");
  const int64_t t = dy.dim(0), out = dy.dim(1), in = x.dim(1);
  CheckShape(x, {t, in});
  CheckShape(dw, {out, in});
  if (x.dtype() == DType::kBF16) {
    for (int64_t r = 0; r < t; r += kRoundRows) {  // dW accumulates block after block
      const int64_t rows = std::min(kRoundRows, t - r);
      GemmBf16(true, false, out, in, rows, 1.0f, RoundRows(dy, r, rows, ctx), out,
               x.bf16() + r * in, in, 1.0f, dw.f32(), in, ctx);
    }
    return;
  }
  Gemm(true, false, out, in, t, 1.0f, dy.f32(), out, x.f32(), in, 1.0f, dw.f32(), in, ctx);
}

}  // namespace seqmesh
