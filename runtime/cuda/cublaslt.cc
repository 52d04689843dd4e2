#include "runtime/cuda/cublaslt.h"

#include <cublasLt.h>
#include <dlfcn.h>

#include <utility>

#include "runtime/cuda/cuda_check.h"

namespace seqmesh::cuda {
namespace {

// The entry points used, resolved from the library by name.
struct LtApi {
#define SM_LT_FN(name) decltype(&::name) name = nullptr;
  SM_LT_FN(cublasLtCreate)
  SM_LT_FN(cublasLtDestroy)
  SM_LT_FN(cublasLtGetStatusString)
  SM_LT_FN(cublasLtMatmulDescCreate)
  SM_LT_FN(cublasLtMatmulDescDestroy)
  SM_LT_FN(cublasLtMatmulDescSetAttribute)
  SM_LT_FN(cublasLtMatrixLayoutCreate)
  SM_LT_FN(cublasLtMatrixLayoutDestroy)
  SM_LT_FN(cublasLtMatmulPreferenceCreate)
  SM_LT_FN(cublasLtMatmulPreferenceDestroy)
  SM_LT_FN(cublasLtMatmulPreferenceSetAttribute)
  SM_LT_FN(cublasLtMatmulAlgoGetHeuristic)
  SM_LT_FN(cublasLtMatmul)
#undef SM_LT_FN
  std::string error;  // "" when loaded
};

#define SM_STR2(x) #x
#define SM_STR(x) SM_STR2(x)
constexpr const char* kLibrary = "libcublasLt.so." SM_STR(CUBLAS_VER_MAJOR);

const LtApi& Api() {
  static const LtApi api = [] {
    LtApi a;
    void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = dlerror();
      a.error = std::string("cannot load ") + kLibrary + " (" + (why ? why : "?") +
                "); install cuBLAS from the CUDA toolkit or add its lib64 folder to "
                "LD_LIBRARY_PATH";
      return a;
    }
    bool ok = true;
    auto load = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (fn == nullptr && ok) {
        ok = false;
        a.error = std::string(kLibrary) + " has no " + name +
                  "; use the cuBLAS of the CUDA toolkit this was built with (" +
                  SM_STR(CUBLAS_VER_MAJOR) + ".x)";
      }
    };
#define SM_LT_LOAD(name) load(a.name, #name);
    SM_LT_LOAD(cublasLtCreate)
    SM_LT_LOAD(cublasLtDestroy)
    SM_LT_LOAD(cublasLtGetStatusString)
    SM_LT_LOAD(cublasLtMatmulDescCreate)
    SM_LT_LOAD(cublasLtMatmulDescDestroy)
    SM_LT_LOAD(cublasLtMatmulDescSetAttribute)
    SM_LT_LOAD(cublasLtMatrixLayoutCreate)
    SM_LT_LOAD(cublasLtMatrixLayoutDestroy)
    SM_LT_LOAD(cublasLtMatmulPreferenceCreate)
    SM_LT_LOAD(cublasLtMatmulPreferenceDestroy)
    SM_LT_LOAD(cublasLtMatmulPreferenceSetAttribute)
    SM_LT_LOAD(cublasLtMatmulAlgoGetHeuristic)
    SM_LT_LOAD(cublasLtMatmul)
#undef SM_LT_LOAD
    return a;
  }();
  return api;
}

const LtApi& LoadedApi() {
  const LtApi& api = Api();
  SM_CHECK(api.error.empty()) << api.error;
  return api;
}

#define SM_CHECK_LT(expr)                                  \
  SM_CHECK_STATUS(expr, CUBLAS_STATUS_SUCCESS, "cuBLASLt") \
      << LoadedApi().cublasLtGetStatusString(sm_status_) << ". "

// The descriptors of one GEMM shape, created once and reused (no allocation per call after the
// first of a shape).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

// The largest power of two up to 256 that divides the address: cuBLASLt assumes 256-byte-aligned
// operands unless told otherwise, and arena views (Rows(), column slices) are only 4-byte aligned.
uint32_t AlignmentOf(const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && u % a != 0) a /= 2;
  return a;
}

}  // namespace

std::string CublasLtUnavailableReason() { return Api().error; }

// Key: trans_a, trans_b, m, n, k, lda, ldb, ldc, input, and the alignments of a, b and c.
using PlanKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int,
                           uint32_t, uint32_t, uint32_t>;

struct LtGemm::State {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<PlanKey, Plan> plans;

  ~State() {
    const LtApi& api = Api();
    if (!api.error.empty()) return;
    for (auto& [key, p] : plans) {
      if (p.a) api.cublasLtMatrixLayoutDestroy(p.a);
      if (p.b) api.cublasLtMatrixLayoutDestroy(p.b);
      if (p.c) api.cublasLtMatrixLayoutDestroy(p.c);
      if (p.desc) api.cublasLtMatmulDescDestroy(p.desc);
    }
    if (workspace) cudaFree(workspace);
    if (handle) api.cublasLtDestroy(handle);
  }
};

LtGemm::LtGemm(cudaStream_t stream, size_t workspace_bytes) : state_(std::make_unique<State>()) {
  const LtApi& api = LoadedApi();
  state_->stream = stream;
  SM_CHECK_LT(api.cublasLtCreate(&state_->handle)) << "creating a cuBLASLt handle";
  SM_CHECK_CUDA(cudaMalloc(&state_->workspace, workspace_bytes))
      << "allocating the " << workspace_bytes << "-byte cuBLASLt workspace";
  state_->workspace_bytes = workspace_bytes;
}

LtGemm::~LtGemm() = default;
LtGemm::LtGemm(LtGemm&&) noexcept = default;
LtGemm& LtGemm::operator=(LtGemm&&) noexcept = default;

void LtGemm::Run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const void* a, int64_t lda, const void* b, int64_t ldb, float beta, float* c,
                 int64_t ldc, GemmInput input) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty product: C = beta * C (the backend passes beta 0 or 1)
    SM_CHECK(beta == 0.0f || beta == 1.0f) << "GEMM with K = 0 supports beta 0 or 1, got " << beta;
    if (beta == 0.0f) {
      SM_CHECK_CUDA(
          cudaMemset2DAsync(c, ldc * sizeof(float), 0, n * sizeof(float), m, state_->stream));
    }
    return;
  }
  const LtApi& api = LoadedApi();
  // Row-major C (m, n) is column-major C^T (n, m), and C^T = op(B)^T op(A)^T: cuBLASLt's first
  // operand is our B and its second our A; a row-major operand read column-major is its
  // transpose, so each operand's transpose flag carries over unchanged.
  const uint32_t align_a = AlignmentOf(a), align_b = AlignmentOf(b), align_c = AlignmentOf(c);
  const PlanKey key{trans_a, trans_b, m,      n, k, lda, ldb, ldc, static_cast<int>(input),
                    align_a, align_b, align_c};
  auto it = state_->plans.find(key);
  if (it == state_->plans.end()) {
    Plan p;
    const cudaDataType_t in = input == GemmInput::kF32 ? CUDA_R_32F : CUDA_R_16BF;
    SM_CHECK_LT(api.cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    SM_CHECK_LT(api.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                                   sizeof(op_first)));
    SM_CHECK_LT(api.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                                   sizeof(op_second)));
    // Stored shapes, column-major: first operand (n, k) or (k, n) transposed; second (k, m) or
    // (m, k) transposed; C (n, m).
    SM_CHECK_LT(api.cublasLtMatrixLayoutCreate(&p.a, in, trans_b ? k : n, trans_b ? n : k, ldb));
    SM_CHECK_LT(api.cublasLtMatrixLayoutCreate(&p.b, in, trans_a ? m : k, trans_a ? k : m, lda));
    SM_CHECK_LT(api.cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, n, m, ldc));
    cublasLtMatmulPreference_t pref = nullptr;
    SM_CHECK_LT(api.cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = state_->workspace_bytes;
    SM_CHECK_LT(api.cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    // cuBLASLt's A is our b and its B our a (see above); C and D are both c.
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c}};
    for (const auto& [attr, value] : alignments) {
      SM_CHECK_LT(api.cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = api.cublasLtMatmulAlgoGetHeuristic(
        state_->handle, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
    api.cublasLtMatmulPreferenceDestroy(pref);
    SM_CHECK(st == CUBLAS_STATUS_SUCCESS && found > 0)
        << "cuBLASLt has no algorithm for a " << (input == GemmInput::kF32 ? "f32" : "bf16")
        << " GEMM of M=" << m << " N=" << n << " K=" << k << " (lda " << lda << ", ldb " << ldb
        << ", ldc " << ldc << "): " << api.cublasLtGetStatusString(st);
    p.algo = result.algo;
    it = state_->plans.emplace(key, p).first;
  }
  const Plan& p = it->second;
  SM_CHECK_LT(api.cublasLtMatmul(state_->handle, p.desc, &alpha, b, p.a, a, p.b, &beta, c, p.c, c,
                                 p.c, &p.algo, state_->workspace, state_->workspace_bytes,
                                 state_->stream))
      << "GEMM M=" << m << " N=" << n << " K=" << k;
}

}  // namespace seqmesh::cuda
