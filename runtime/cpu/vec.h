// Vectorized inner loops, compiled once per ISA (vec_avx512.cc, vec_avx2.cc, vec_generic.cc all
// include vec_impl.inc) and chosen at run time from the CPU's features. Every function works on
// one row or one contiguous range and is single-threaded; callers parallelize over rows.
#pragma once

#include <cstdint>

#include "runtime/adamw_step.h"

namespace seqmesh::cpu {

using seqmesh::AdamWStep;

struct VecKernels {
  const char* isa;
  // Returns sum_i x[i]^2 in float (vector lanes, then a horizontal sum).
  float (*sum_squares)(const float* x, int64_t n);
  // Returns max_i x[i] (-inf for n == 0).
  float (*max)(const float* x, int64_t n);
  // x[i] = exp(x[i] - shift); returns the sum of the new x.
  float (*exp_shift)(float* x, int64_t n, float shift);
  // x[i] *= a.
  void (*scale)(float* x, int64_t n, float a);
  // y[i] += x[i].
  void (*add)(float* y, const float* x, int64_t n);
  // Returns sum_i a[i] * b[i].
  float (*dot)(const float* a, const float* b, int64_t n);
  // Flash-attention backward: ds[i] = p[i] * (dp[i] - delta), written over dp.
  void (*softmax_grad)(const float* p, float* dp, int64_t n, float delta);
  // y = w * x * rstd with rstd = 1/sqrt(mean(x^2) + eps); returns rstd.
  float (*rmsnorm)(const float* x, const float* w, float* y, int64_t n, float eps);
  // dx = rstd * (w*dy - xhat * mean(w*dy*xhat)) with xhat = x*rstd (dx may be accumulated
  // into when accumulate is set); dw[i] += dy[i] * xhat[i].
  void (*rmsnorm_backward)(const float* dy, const float* x, const float* w, float rstd, float* dx,
                           float* dw, int64_t n, bool accumulate);
  // Rotary embedding of one head in place, rotate_half pairing (i, i + half):
  // (x1, x2) -> (x1*c - x2*s, x2*c + x1*s); `inverse` applies the transpose (backward).
  void (*rope)(float* x, const float* cos, const float* sin, int64_t half, bool inverse);
  // h[i] = silu(g[i]) * u[i].
  void (*swiglu)(const float* g, const float* u, float* h, int64_t n);
  // From dh: dg[i] = dh*u*silu'(g), du[i] = dh*silu(g).
  void (*swiglu_backward)(const float* g, const float* u, const float* dh, float* dg, float* du,
                          int64_t n);
  // Softmax cross-entropy of one row of logits, in place: returns the loss of the row
  // (lse - x[target]) and overwrites x with (softmax - onehot(target)) * grad_scale.
  float (*cross_entropy)(float* x, int64_t n, int32_t target, float grad_scale);
  // Fused AdamW over a contiguous range (torch.optim.AdamW arithmetic, see optimizer.cc).
  void (*adamw)(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s);
};

// The kernels for this CPU (AVX-512, AVX2+FMA, or portable), chosen once.
const VecKernels& Vec();
// All tables built into this binary (for tests that compare ISAs with each other).
const VecKernels* const* AllVecKernels(int* count);

}  // namespace seqmesh::cpu
