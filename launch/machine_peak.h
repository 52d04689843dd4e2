// The MFU denominator (issue 13, item 8): this machine's FMA peak for a number of compute
// threads, measured once (the best of five runs of MeasureFmaPeakGflops at its full length) and
// cached per CPU model, ISA and thread count in $SEQMESH_CACHE_DIR (else $XDG_CACHE_HOME/seqmesh,
// else ~/.cache/seqmesh), so every run on the machine divides by the same figure and a run does
// not pay for, or suffer from, a few milliseconds of measurement on a busy machine. An MFU is
// never above 1: a step that ran faster than the cached peak shows that the peak was measured
// low, and becomes the peak (the cache is updated).
#pragma once

#include <string>

namespace seqmesh::launch {

class MachinePeak {
 public:
  explicit MachinePeak(int threads);
  double gflops() const { return gflops_; }
  const std::string& source() const { return source_; }  // "measured" or the cache file
  // achieved / peak, at most 1 (raising the peak, and the cache, when achieved exceeds it).
  double Mfu(double achieved_gflops);

 private:
  void Save() const;
  int threads_;
  std::string cpu_, isa_, path_, source_;
  double gflops_ = 0;
};

}  // namespace seqmesh::launch
