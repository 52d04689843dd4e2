#include "runtime/matmul.h"

#include <oneapi/dnnl/dnnl.h>

#include <limits>

namespace seqmesh {

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // oneDNN rejects K = 0; the product is empty, so C = beta * C.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  SM_CHECK_DNNL(dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                           beta, c, ldc))
      << "sgemm M=" << m << " N=" << n << " K=" << k;
}

namespace {
void CheckLinear(const Tensor& x, const Tensor& w, const Tensor& y, const char* op) {
  SM_CHECK(x.shape().ndim() == 2 && w.shape().ndim() == 2 && y.shape().ndim() == 2)
      << op << ": '" << x.name() << "' " << x.shape().ToString() << ", '" << w.name() << "' "
      << w.shape().ToString() << ", '" << y.name() << "' " << y.shape().ToString()
      << " must all be 2-D";
}
}  // namespace

void LinearForward(const Tensor& x, const Tensor& w, const Tensor& y) {
  CheckLinear(x, w, y, "LinearForward");
  const int64_t t = x.dim(0), in = x.dim(1), out = w.dim(0);
  CheckShape(w, {out, in});
  CheckShape(y, {t, out});
  Gemm(false, true, t, out, in, 1.0f, x.f32(), in, w.f32(), in, 0.0f, y.f32(), out);
}

void LinearBackwardInput(const Tensor& dy, const Tensor& w, const Tensor& dx, bool accumulate) {
  CheckLinear(dy, w, dx, "LinearBackwardInput");
  const int64_t t = dy.dim(0), out = dy.dim(1), in = w.dim(1);
  CheckShape(w, {out, in});
  CheckShape(dx, {t, in});
  Gemm(false, false, t, in, out, 1.0f, dy.f32(), out, w.f32(), in, accumulate ? 1.0f : 0.0f,
       dx.f32(), in);
}

void LinearBackwardWeight(const Tensor& dy, const Tensor& x, const Tensor& dw) {
  CheckLinear(dy, x, dw, "LinearBackwardWeight");
  const int64_t t = dy.dim(0), out = dy.dim(1), in = x.dim(1);
  CheckShape(x, {t, in});
  CheckShape(dw, {out, in});
  Gemm(true, false, out, in, t, 1.0f, dy.f32(), out, x.f32(), in, 1.0f, dw.f32(), in);
}

}  // namespace seqmesh
