// cuBLASLt GEMMs for the CUDA backend, row-major like runtime/cpu/matmul.h's Gemm.
//
// libcublasLt is opened with dlopen on first use, not linked: loading it (a 540 MB library) took
// 0.75 s per process on the CI machine, and every test binary links the runtime, so linking it
// would add that to each of the hundreds of test processes CTest starts. A binary therefore starts
// on a machine without cuBLAS, and CublasLtUnavailableReason() says what is missing.
//
// Determinism: cuBLAS documents bitwise-identical results run to run on GPUs of the same
// architecture and SM count for a given toolkit version; the algorithm is the first heuristic
// for the shape (the same every call), with a fixed workspace.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace seqmesh::cuda {

// Operand element type; accumulation and C are always f32.
//   kF32: IEEE fp32 (CUBLAS_COMPUTE_32F, no TF32), the mode the tests compare against the CPU.
//   kBf16: bf16 A and B, f32 accumulate (tensor cores).
enum class GemmInput { kF32, kBf16 };

// "" when libcublasLt can be loaded, else one line naming the problem and the fix.
std::string CublasLtUnavailableReason();

// One cuBLASLt handle, workspace and algorithm cache, used on one stream. Move-only.
class LtGemm {
 public:
  explicit LtGemm(cudaStream_t stream, size_t workspace_bytes = size_t{32} << 20);
  ~LtGemm();
  LtGemm(LtGemm&&) noexcept;
  LtGemm& operator=(LtGemm&&) noexcept;
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // C (m, n; row stride ldc) = alpha * op(A) op(B) + beta * C with row-major A (m, k) or, when
  // trans_a, A^T stored (k, m); B (k, n) or, when trans_b, B^T stored (n, k). Device pointers.
  void Run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const void* a,
           int64_t lda, const void* b, int64_t ldb, float beta, float* c, int64_t ldc,
           GemmInput input);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace seqmesh::cuda
