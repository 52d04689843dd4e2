// bf16 GEMM (GemmBf16: oneDNN's matmul, AMX or AVX512-BF16 where the CPU has them) against the
// fp32 Gemm (oneDNN sgemm) on the same shapes and threads, both tiled the project's way: GFLOP/s,
// medians of 7 runs after one warm-up, and the ratio. Shapes: a square 1024^3, and the linear
// layers of a Llama-1B-like layer on 4096 tokens (hidden 2048, ffn 8192) forward, backward-input
// and backward-weight.
//   gemm_bf16 [THREADS]   (default 2)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "runtime/cpu/matmul.h"
#include "runtime/dtype.h"

using namespace seqmesh;

struct Problem {
  const char* name;
  bool ta, tb;
  int64_t m, n, k;
};

template <typename F>
double MedianSeconds(F f) {
  f();
  std::vector<double> s;
  for (int r = 0; r < 7; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return s[3];
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const ExecutionContext ctx{threads};
  std::printf("bf16 matmul implementation: %s; %d threads\n", Bf16GemmImplementation().c_str(),
              threads);
  const Problem shapes[] = {
      {"square 1024^3", false, false, 1024, 1024, 1024},
      {"up+gate fwd (4096 x 2048 -> 16384)", false, true, 4096, 16384, 2048},
      {"down bwd-input (4096 x 2048 <- 8192)", false, false, 4096, 2048, 8192},
      {"down bwd-weight (2048 x 8192, K=4096)", true, false, 2048, 8192, 4096}};
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const Problem& s : shapes) {
    std::vector<float> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n);
    for (auto& x : a) x = u(rng);
    for (auto& x : b) x = u(rng);
    std::vector<uint16_t> ah(a.size()), bh(b.size());
    FloatToBf16(a.data(), ah.data(), a.size());
    FloatToBf16(b.data(), bh.data(), b.size());
    const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    const double fp32 = MedianSeconds([&] {
      Gemm(s.ta, s.tb, s.m, s.n, s.k, 1, a.data(), lda, b.data(), ldb, 0, c.data(), s.n, ctx);
    });
    const double bf16 = MedianSeconds([&] {
      GemmBf16(s.ta, s.tb, s.m, s.n, s.k, 1, ah.data(), lda, bh.data(), ldb, 0, c.data(), s.n, ctx);
    });
    const double flops = 2.0 * s.m * s.n * s.k;
    std::printf("%-40s fp32 %7.1f GFLOP/s  bf16 %7.1f GFLOP/s  bf16/fp32 %.2fx\n", s.name,
                flops / fp32 / 1e9, flops / bf16 / 1e9, fp32 / bf16);
  }
  return 0;
}
