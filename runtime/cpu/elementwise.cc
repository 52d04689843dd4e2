#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/check.h"
#include "runtime/cpu/layers.h"
#include "runtime/cpu/vec.h"
#include "runtime/tensor.h"

namespace seqmesh {

void EmbeddingForward(const int32_t* tokens, int64_t t, const float* table, int64_t vocab,
                      int64_t hidden, float* out, const ExecutionContext& ctx) {
  for (int64_t i = 0; i < t; ++i)
    SM_CHECK(tokens[i] >= 0 && tokens[i] < vocab)
        << "token id " << tokens[i] << " at position " << i << " is outside the vocabulary [0, "
        << vocab << ")";
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t i = 0; i < t; ++i)
    std::memcpy(out + i * hidden, table + static_cast<int64_t>(tokens[i]) * hidden,
                hidden * sizeof(float));
}

void EmbeddingBackward(const int32_t* tokens, int64_t t, const float* dout, int64_t hidden,
                       float* dtable, const ExecutionContext& ctx) {
#pragma omp parallel num_threads(ctx.threads)
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t c0 = hidden * id / nt, c1 = hidden * (id + 1) / nt;
    for (int64_t i = 0; i < t; ++i)
      cpu::Vec().add(dtable + static_cast<int64_t>(tokens[i]) * hidden + c0, dout + i * hidden + c0,
                     c1 - c0);
  }
}

void RmsNormForward(const float* x, const float* w, float* y, float* rstd, int64_t t, int64_t n,
                    float eps, const ExecutionContext& ctx) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t i = 0; i < t; ++i) rstd[i] = cpu::Vec().rmsnorm(x + i * n, w, y + i * n, n, eps);
}

void RmsNormBackward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                     float* dw, int64_t t, int64_t n, bool accumulate,
                     const ExecutionContext& ctx) {
  // dw is reduced over fixed blocks of rows, and the block sums are added in block order, so the
  // result does not depend on the thread count.
  constexpr int64_t kRowsPerBlock = 64;
  const int64_t blocks = (t + kRowsPerBlock - 1) / kRowsPerBlock;
  thread_local AlignedBuffer partial;
  partial.Reserve(static_cast<size_t>(std::max<int64_t>(blocks, 1) * n));
  float* part = partial.data();
  std::fill(part, part + blocks * n, 0.0f);
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r1 = std::min(t, (b + 1) * kRowsPerBlock);
    for (int64_t i = b * kRowsPerBlock; i < r1; ++i)
      cpu::Vec().rmsnorm_backward(dy + i * n, x + i * n, w, rstd[i], dx + i * n, part + b * n, n,
                                  accumulate);
  }
  for (int64_t b = 0; b < blocks; ++b) cpu::Vec().add(dw, part + b * n, n);
}

void RopeTable(const int32_t* positions, int64_t t, const double* inv_freq, int half, float* cos,
               float* sin, const ExecutionContext& ctx) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t r = 0; r < t; ++r)
    for (int i = 0; i < half; ++i) {
      const double angle = positions[r] * inv_freq[i];
      cos[r * half + i] = static_cast<float>(std::cos(angle));
      sin[r * half + i] = static_cast<float>(std::sin(angle));
    }
}

void RopeApply(float* x, int64_t ld, int64_t t, int heads, int head_dim, const float* cos,
               const float* sin, bool inverse, const ExecutionContext& ctx) {
  const int half = head_dim / 2;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t r = 0; r < t; ++r)
    for (int h = 0; h < heads; ++h)
      cpu::Vec().rope(x + r * ld + h * head_dim, cos + r * half, sin + r * half, half, inverse);
}

void SwiGluForward(const float* gu, float* h, int64_t t, int64_t f, const ExecutionContext& ctx) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t r = 0; r < t; ++r)
    cpu::Vec().swiglu(gu + r * 2 * f, gu + r * 2 * f + f, h + r * f, f);
}

void SwiGluBackward(const float* gu, const float* dh, float* dgu, int64_t t, int64_t f,
                    const ExecutionContext& ctx) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t r = 0; r < t; ++r)
    cpu::Vec().swiglu_backward(gu + r * 2 * f, gu + r * 2 * f + f, dh + r * f, dgu + r * 2 * f,
                               dgu + r * 2 * f + f, f);
}

}  // namespace seqmesh
