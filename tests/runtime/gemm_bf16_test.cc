// GemmBf16 (runtime/cpu/matmul.h): bf16 products summed in fp32, against the same sums in double
// from the same bf16 values; exact on small integers; every transpose with alpha and beta; and
// the same bits on 1 and 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "runtime/cpu/matmul.h"
#include "runtime/dtype.h"

namespace seqmesh {
namespace {

struct Problem {
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
};

// op(A) (m x k) and op(B) (k x n) stored row-major, transposed where asked.
struct Data {
  std::vector<uint16_t> a, b;
  std::vector<float> c;
  int64_t lda, ldb;
};

Data Make(const Problem& p, bool integers, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  auto value = [&] { return integers ? std::round(4 * u(rng)) : u(rng); };
  Data d;
  d.lda = p.ta ? p.m : p.k;
  d.ldb = p.tb ? p.k : p.n;
  d.a.resize(p.m * p.k);
  d.b.resize(p.k * p.n);
  for (auto& x : d.a) x = FloatToBf16(value());
  for (auto& x : d.b) x = FloatToBf16(value());
  d.c.resize(p.m * p.n);
  for (auto& x : d.c) x = value();
  return d;
}

float A(const Problem& p, const Data& d, int64_t i, int64_t l) {
  return Bf16ToFloat(p.ta ? d.a[l * d.lda + i] : d.a[i * d.lda + l]);
}
float B(const Problem& p, const Data& d, int64_t l, int64_t j) {
  return Bf16ToFloat(p.tb ? d.b[j * d.ldb + l] : d.b[l * d.ldb + j]);
}

std::vector<float> Multiply(const Problem& p, Data d, int threads) {
  GemmBf16(p.ta, p.tb, p.m, p.n, p.k, p.alpha, d.a.data(), d.lda, d.b.data(), d.ldb, p.beta,
           d.c.data(), p.n, ExecutionContext{threads});
  return d.c;
}

const std::vector<Problem> kProblems = {
    {false, true, 300, 200, 96, 1, 0},  {false, false, 64, 520, 257, 1, 1},
    {true, false, 200, 130, 333, 1, 1}, {true, true, 17, 9, 5, 0.5f, 2},
    {false, true, 1, 700, 1024, 1, 0},  {false, false, 513, 64, 64, -1, 0.25f}};

TEST(GemmBf16, SumsBf16ProductsInFp32) {
  std::cerr << "bf16 matmul: " << Bf16GemmImplementation() << "\n";
  for (const Problem& p : kProblems) {
    const Data d = Make(p, false, 7);
    const std::vector<float> c = Multiply(p, d, 2);
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) {
        double ref = 0, mag = 0;
        for (int64_t l = 0; l < p.k; ++l) {
          ref += static_cast<double>(A(p, d, i, l)) * B(p, d, l, j);
          mag += std::abs(static_cast<double>(A(p, d, i, l)) * B(p, d, l, j));
        }
        const double want = p.alpha * ref + p.beta * d.c[i * p.n + j];
        // bf16 x bf16 products are exact in fp32; a sum of k of them in fp32, in any order, is
        // within k * 2^-24 of the exact sum relative to the sum of magnitudes (plus the alpha,
        // beta rounding, a few ulp of the result).
        const double tol = (p.k + 4) * std::ldexp(1.0, -24) *
                           (std::abs(p.alpha) * mag + std::abs(p.beta * d.c[i * p.n + j]) + 1e-30);
        ASSERT_NEAR(c[i * p.n + j], want, tol)
            << "M=" << p.m << " N=" << p.n << " K=" << p.k << " at (" << i << ", " << j << ")";
      }
  }
}

TEST(GemmBf16, IsExactOnSmallIntegersAndTheSameOnOneAndTwoThreads) {
  for (const Problem& p : kProblems) {
    const Data d = Make(p, true, 11);
    const std::vector<float> c = Multiply(p, d, 2);
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) {
        double ref = 0;
        for (int64_t l = 0; l < p.k; ++l) ref += static_cast<double>(A(p, d, i, l)) * B(p, d, l, j);
        if (p.alpha == 1 && p.beta == 0) {
          ASSERT_EQ(c[i * p.n + j], ref) << i << ", " << j;
        }
      }
    const Data e = Make(p, false, 13);
    EXPECT_EQ(Multiply(p, e, 1), Multiply(p, e, 2)) << "M=" << p.m << " N=" << p.n << " K=" << p.k;
  }
}

}  // namespace
}  // namespace seqmesh
