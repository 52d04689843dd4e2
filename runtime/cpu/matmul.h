// Matrix multiplication on CPU through oneDNN's sgemm (never Debian's OpenBLAS, which misdetects
// AVX-512 CPUs and runs about 5x slow). oneDNN picks its own ISA at run time.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/execution_context.h"
#include "runtime/tensor.h"

namespace seqmesh {

// Row-major C(M,N) = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T. Called from inside an
// OpenMP parallel region it runs single-threaded (oneDNN does not nest); else on up to
// ctx.threads threads.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
          const ExecutionContext& ctx = {});

// The same with A and B in bf16 (their uint16_t bit patterns) and C in f32, the products summed in
// fp32: oneDNN's matmul primitive, which runs on AMX or AVX512-BF16 where the CPU has them and
// emulates bf16 elsewhere (Bf16GemmImplementation names what runs). Tiled as Gemm is: the bits do
// not depend on ctx.threads.
void GemmBf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c,
              int64_t ldc, const ExecutionContext& ctx = {});
// oneDNN's name for the implementation GemmBf16 gets on this CPU (e.g. "brg:avx512_core_amx").
std::string Bf16GemmImplementation();

// Linear layers with weights in the PyTorch layout W (out, in):
//   y (T, out)  = x (T, in) W^T                          LinearForward
//   dx (T, in)  = dy (T, out) W      (+= if accumulate)  LinearBackwardInput
//   dW (out,in) += dy^T x                                LinearBackwardWeight
//   y (T, out) += x W^T                                  LinearForward, accumulate
void LinearForward(const Tensor& x, const Tensor& w, const Tensor& y, bool accumulate = false,
                   const ExecutionContext& ctx = {});
void LinearBackwardInput(const Tensor& dy, const Tensor& w, const Tensor& dx, bool accumulate,
                         const ExecutionContext& ctx = {});
void LinearBackwardWeight(const Tensor& dy, const Tensor& x, const Tensor& dw,
                          const ExecutionContext& ctx = {});

}  // namespace seqmesh
