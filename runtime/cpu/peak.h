// The machine's FMA peak (the MFU denominator), measured, not looked up.
#pragma once

#include <cstdint>

namespace seqmesh {

// GFLOP/s of `threads` threads running AVX-512 (or AVX2) FMA chains for `iters` iterations each,
// the median of three runs; 0 on a CPU with neither.
double MeasureFmaPeakGflops(int threads, int64_t iters = 20'000'000);

}  // namespace seqmesh
