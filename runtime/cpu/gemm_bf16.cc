// GemmBf16: oneDNN's matmul primitive with bf16 sources and an f32 destination (oneDNN 2.6 has no
// bf16 gemm entry point in its C API). Primitives are built once per problem (shape, strides,
// alpha, beta) and kept; each tile runs single-threaded inside the caller's OpenMP team, tiled
// from the shape alone as Gemm is, so the result does not depend on the thread count.
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <exception>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "runtime/check.h"
#include "runtime/cpu/gemm_tiles.h"
#include "runtime/cpu/matmul.h"
#include "runtime/dtype.h"

namespace seqmesh {
namespace {

dnnl_engine_t Engine() {
  static dnnl_engine_t engine = [] {
    dnnl_engine_t e = nullptr;
    SM_CHECK_DNNL(dnnl_engine_create(&e, dnnl_cpu, 0)) << "a oneDNN CPU engine";
    return e;
  }();
  return engine;
}

dnnl_stream_t Stream() {  // streams are not thread-safe: one per thread
  thread_local dnnl_stream_t stream = [] {
    dnnl_stream_t s = nullptr;
    SM_CHECK_DNNL(dnnl_stream_create(&s, Engine(), dnnl_stream_default_flags)) << "a stream";
    return s;
  }();
  return stream;
}

using Key =
    std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, float>;

struct Matmul {
  dnnl_primitive_t primitive = nullptr;
  dnnl_memory_desc_t a, b, c;
  std::string impl;
};

// The primitive for one problem, built on first use and kept for the process.
const Matmul& MatmulFor(const Key& key) {
  static std::mutex mu;
  static std::map<Key, Matmul> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const auto [ta, tb, m, n, k, lda, ldb, ldc, alpha, beta] = key;
  Matmul mm;
  const dnnl_dims_t a_dims = {m, k}, b_dims = {k, n}, c_dims = {m, n};
  const dnnl_dims_t a_strides = {ta ? 1 : lda, ta ? lda : 1};
  const dnnl_dims_t b_strides = {tb ? 1 : ldb, tb ? ldb : 1};
  const dnnl_dims_t c_strides = {ldc, 1};
  SM_CHECK_DNNL(dnnl_memory_desc_init_by_strides(&mm.a, 2, a_dims, dnnl_bf16, a_strides));
  SM_CHECK_DNNL(dnnl_memory_desc_init_by_strides(&mm.b, 2, b_dims, dnnl_bf16, b_strides));
  SM_CHECK_DNNL(dnnl_memory_desc_init_by_strides(&mm.c, 2, c_dims, dnnl_f32, c_strides));
  dnnl_matmul_desc_t desc;
  SM_CHECK_DNNL(dnnl_matmul_desc_init(&desc, &mm.a, &mm.b, nullptr, &mm.c));
  dnnl_primitive_attr_t attr = nullptr;
  SM_CHECK_DNNL(dnnl_primitive_attr_create(&attr));
  if (alpha != 1.0f) {
    SM_CHECK_DNNL(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha));
  }
  if (beta != 0.0f) {
    dnnl_post_ops_t ops = nullptr;
    SM_CHECK_DNNL(dnnl_post_ops_create(&ops));
    SM_CHECK_DNNL(dnnl_post_ops_append_sum(ops, beta));
    SM_CHECK_DNNL(dnnl_primitive_attr_set_post_ops(attr, ops));
    dnnl_post_ops_destroy(ops);
  }
  dnnl_primitive_desc_t pd = nullptr;
  const dnnl_status_t made = dnnl_primitive_desc_create(&pd, &desc, attr, Engine(), nullptr);
  dnnl_primitive_attr_destroy(attr);
  if (made == dnnl_unimplemented) {  // no bf16 matmul on this ISA (oneDNN 2.6 on AVX2)
    mm.impl = "emulated (bf16 widened to fp32, sgemm)";
    return cache.emplace(key, std::move(mm)).first->second;
  }
  SM_CHECK_DNNL(made) << "bf16 matmul M=" << m << " N=" << n << " K=" << k;
  const char* impl = nullptr;
  SM_CHECK_DNNL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
  mm.impl = impl ? impl : "?";
  SM_CHECK_DNNL(dnnl_primitive_create(&mm.primitive, pd));
  dnnl_primitive_desc_destroy(pd);
  return cache.emplace(key, std::move(mm)).first->second;
}

// A rows x cols block of bf16 values with leading dimension ld, widened (exactly) to a dense one.
const float* Widen(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld,
                   std::vector<float>& out) {
  out.resize(rows * cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) out[i * cols + j] = Bf16ToFloat(x[i * ld + j]);
  return out.data();
}

void Bf16Tile(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a,
              int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (!omp_in_parallel()) omp_set_num_threads(1);
  const Matmul& mm = MatmulFor({ta, tb, m, n, k, lda, ldb, ldc, alpha, beta});
  if (!mm.primitive) {
    // Emulated: the bf16 values widened to fp32 are exact, so this is sgemm on the same numbers.
    thread_local std::vector<float> wa, wb;
    const float* fa = ta ? Widen(a, k, m, lda, wa) : Widen(a, m, k, lda, wa);
    const float* fb = tb ? Widen(b, n, k, ldb, wb) : Widen(b, k, n, ldb, wb);
    SM_CHECK_DNNL(dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, fa, ta ? m : k, fb,
                             tb ? k : n, beta, c, ldc))
        << "sgemm M=" << m << " N=" << n << " K=" << k;
    return;
  }
  dnnl_memory_t am = nullptr, bm = nullptr, cm = nullptr;
  SM_CHECK_DNNL(dnnl_memory_create(&am, &mm.a, Engine(), const_cast<uint16_t*>(a)));
  SM_CHECK_DNNL(dnnl_memory_create(&bm, &mm.b, Engine(), const_cast<uint16_t*>(b)));
  SM_CHECK_DNNL(dnnl_memory_create(&cm, &mm.c, Engine(), c));
  const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
  const dnnl_status_t s = dnnl_primitive_execute(mm.primitive, Stream(), 3, args);
  const dnnl_status_t w = dnnl_stream_wait(Stream());
  dnnl_memory_destroy(am);
  dnnl_memory_destroy(bm);
  dnnl_memory_destroy(cm);
  SM_CHECK_DNNL(s) << "bf16 matmul M=" << m << " N=" << n << " K=" << k;
  SM_CHECK_DNNL(w) << "bf16 matmul M=" << m << " N=" << n << " K=" << k;
}

}  // namespace

void GemmBf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c,
              int64_t ldc, const ExecutionContext& ctx) {
  if (m == 0 || n == 0) return;
  SM_CHECK(k > 0) << "GemmBf16: K = 0";
  TiledGemm(trans_a, trans_b, m, n, a, lda, b, ldb, c, ldc, ctx,
            [&](int64_t mt, int64_t nt, const uint16_t* at, const uint16_t* bt, float* ct) {
              Bf16Tile(trans_a, trans_b, mt, nt, k, alpha, at, lda, bt, ldb, beta, ct, ldc);
            });
}

std::string Bf16GemmImplementation() {
  return MatmulFor({false, true, 256, 256, 256, 256, 256, 256, 1.0f, 0.0f}).impl;
}

}  // namespace seqmesh
