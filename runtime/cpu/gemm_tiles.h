// How Gemm and GemmBf16 (runtime/cpu/matmul.h) cut C into tiles and run them.
//
// Tiles of C are chosen from the shape alone (never from the thread count): C is cut along its
// longer side into up to kMaxTiles tiles of at least kMinTile rows or columns (multiples of 16).
// Each tile is one single-threaded oneDNN call over the whole K, so every element of C is summed
// in the same order however many threads share the tiles. oneDNN's own threading splits K for
// small M x N on AVX2 (partial sums per thread, added at the end), which made gradients differ in
// their last bits between 1 and 2 threads there (issue 13, item 10).
//
// The operand shared by every tile is packed again per tile, so tiles are few and large: on the
// 12-layer bench model (bench/step_cpu, 2 threads, AVX2) 16 tiles of >= 32 ran the step at 0.83x
// of oneDNN's own threading, 8 of >= 256 at 0.91x, 4 of >= 256 at 1.00x (docs/BENCHMARKS.md).
// The cost of the cap: a GEMM uses at most kMaxTiles threads.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>

#include "runtime/execution_context.h"

namespace seqmesh {

constexpr int64_t kGemmMaxTiles = 4;
constexpr int64_t kGemmMinTile = 128;

struct GemmTiling {
  bool along_m;
  int64_t size;   // rows (along_m) or columns per tile
  int64_t count;  // number of tiles
};

inline GemmTiling GemmTilesOf(int64_t m, int64_t n) {
  const bool along_m = m >= n;
  const int64_t side = along_m ? m : n;
  const int64_t count = std::clamp<int64_t>(side / kGemmMinTile, 1, kGemmMaxTiles);
  const int64_t size = ((side + count - 1) / count + 15) / 16 * 16;
  return {along_m, size, (side + size - 1) / size};
}

// Runs tile(i) for i in [0, count) on up to ctx.threads threads. Even a single tile, or a single
// thread, runs inside a parallel region: called outside one, oneDNN would thread (and split K)
// on its own. A check that fails in a tile is rethrown here (an exception may not leave an
// OpenMP region).
template <typename Tile>
void RunGemmTiles(int64_t count, const ExecutionContext& ctx, const Tile& tile) {
  std::exception_ptr error;
  auto run = [&](int64_t i) {
    try {
      tile(i);
    } catch (...) {
#pragma omp critical(seqmesh_gemm_error)
      if (!error) error = std::current_exception();
    }
  };
  if (ctx.threads == 1) {
#pragma omp parallel num_threads(1)
    for (int64_t i = 0; i < count; ++i) run(i);
  } else {
    const int threads = static_cast<int>(std::min<int64_t>(count, ctx.threads));
#pragma omp parallel for schedule(static) num_threads(std::max(threads, 2))
    for (int64_t i = 0; i < count; ++i) run(i);
  }
  if (error) std::rethrow_exception(error);
}

// One single-threaded kernel call per tile of C: kernel(m_tile, n_tile, a_tile, b_tile, c_tile),
// the tile's operands pointing into the caller's row-major storage (same leading dimensions).
template <typename T, typename Kernel>
void TiledGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, const T* a, int64_t lda,
               const T* b, int64_t ldb, float* c, int64_t ldc, const ExecutionContext& ctx,
               const Kernel& kernel) {
  const GemmTiling tiles = GemmTilesOf(m, n);
  RunGemmTiles(tiles.count, ctx, [&](int64_t i) {
    const int64_t lo = i * tiles.size;
    if (tiles.along_m) {
      kernel(std::min(tiles.size, m - lo), n, trans_a ? a + lo : a + lo * lda, b, c + lo * ldc);
    } else {
      kernel(m, std::min(tiles.size, n - lo), a, trans_b ? b + lo * ldb : b + lo, c + lo);
    }
  });
}

}  // namespace seqmesh
