// The FMA throughput of the machine from a register-only loop: independent fused multiply-add
// chains on every thread, so the figure is the hardware limit, not a memory bound.
#include "runtime/cpu/peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace seqmesh {
namespace {

// Independent FMA chains on every thread: 2 * lanes * chains FLOPs per iteration.
__attribute__((target("avx512f"))) double FmaLoop512(int64_t iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12  // keeps the 12 chains in registers
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  // Lanes summed through memory: GCC 12's _mm512_reduce_add_ps warns of an uninitialized
  // temporary in its own header.
  alignas(64) float lanes[16];
  float sink = 0;
  for (int i = 0; i < 12; ++i) {
    _mm512_store_ps(lanes, acc[i]);
    for (float x : lanes) sink += x;
  }
  return sink;
}

__attribute__((target("avx2,fma"))) double FmaLoop256(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  float out[8], sink = 0;
  for (int i = 0; i < 12; ++i) {
    _mm256_storeu_ps(out, acc[i]);
    for (float x : out) sink += x;
  }
  return sink;
}

}  // namespace

double MeasureFmaPeakGflops(int threads, int64_t iters) {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!avx512 && !avx2) return 0.0;
  const int lanes = avx512 ? 16 : 8;
  std::vector<double> rates;
  for (int rep = 0; rep < 3; ++rep) {
    double sink = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += avx512 ? FmaLoop512(iters) : FmaLoop256(iters);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile double keep = sink;  // keep the loops alive
    (void)keep;
    rates.push_back(2.0 * lanes * 12 * iters * threads / dt / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[1];
}

}  // namespace seqmesh
