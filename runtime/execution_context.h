// ExecutionContext: how compute runs, passed to whoever computes (a Backend holds one) instead of
// being set process-wide. The OpenMP team size of every compute kernel comes from here
// (`num_threads(ctx.threads)` on each parallel region), so threads that are not compute (the
// heartbeat, the offload layer's I/O threads) never inherit a compute setting by accident, and
// two backends with different thread counts can live in one process.
//
// Results do not depend on `threads`: every kernel splits work by shape, never by thread count
// (runtime/cpu/matmul.cc, the fixed-block reductions in runtime/cpu/elementwise.cc).
#pragma once

namespace seqmesh {

struct ExecutionContext {
  int threads = 1;  // compute threads, >= 1; a default context runs on one
  void Validate() const;
};

}  // namespace seqmesh
