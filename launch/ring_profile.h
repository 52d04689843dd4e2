// Ring passes under the job's own concurrency, for `seqmesh profile --rings` (DESIGN.md
// section 4): what a ring of D ranks really costs against the cost model's sum T(s)/D, and what
// a step's gradient sync and AdamW cost beside the passes.
//
// Every rank of the MPI job takes part. For each ring size D in 1..N (1: every rank runs one
// local pass) ranks 0..D-1 form a ring and run one forward + backward of the
// config's model through StepExecutor, as a worker does: zigzag chunks, ring attention over
// MpiRingLink. After each pass a GradSync step (ZeRO-1 reduce-scatter, AdamW, all-gather) is
// timed. For 1 < D < N this runs twice: with the other ranks waiting (as beside rings, or with
// nothing left to run) and with them running local passes of the same per-rank tokens until the
// ring is done (competitors for shared cores that never wait). Rank 0's times are returned on rank
// 0 (other ranks get an empty list).
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/mpi/mpi_communicator.h"
#include "runtime/execution_context.h"
#include "runtime/run_config.h"

namespace seqmesh::launch {

struct RingSample {
  int ring_size = 0;
  int64_t tokens_per_rank = 0;
  bool others_busy = false;  // the ranks outside the ring ran local passes (else waited)
  double pass_ms = 0;        // median over the reps of rank 0's forward + backward, all layers
  double sync_ms = 0;        // median over the reps of rank 0's GradSync step after it
  double wait_ms = 0;        // median over the reps of rank 0's time waiting for ring partners
  double spread = 0;         // (max - min) / median of the pass times
};

// `tokens_per_rank`: per-rank tokens of each ring (the sequence is D times as long); reps
// rounds over all (D, tokens) pairs, each pair run once untimed first.
std::vector<RingSample> MeasureRings(MpiCommunicator& comm, const RunConfig& config,
                                     const std::vector<int64_t>& tokens_per_rank, int reps,
                                     const ExecutionContext& context);

}  // namespace seqmesh::launch
