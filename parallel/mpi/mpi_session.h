// MpiSession: MPI_Init_thread / MPI_Finalize as a move-only RAII type, for the main of a worker,
// a test or a benchmark. Before MPI starts it sets Open MPI defaults that our non-blocking
// collectives need (each only when the environment does not set it already):
//   OMPI_MCA_coll_libnbc_iallreduce_algorithm=3 (Rabenseifner: reduce-scatter + all-gather).
//     libnbc's default choice for 2 ranks is recursive doubling, which moves the whole buffer
//     at every step and reached about 0.5x of MPI_Allreduce's busBW at 256 KiB..64 MiB here;
//     Rabenseifner reaches 0.93..1.05x for 2 and 4 ranks (docs/PARALLEL.md).
// After MPI starts it finds whether this node runs more ranks than it has cores (CoresShared),
// which decides how our waits poll.
#pragma once

#include <mpi.h>

#include <chrono>

namespace seqmesh::mpi {

// Whether ranks of this job share cores on this node (more ranks on the node than online CPUs).
// Waits then sleep between polls once past their first millisecond, so that a waiting rank gives
// its core to the peer it waits for (sched_yield hardly gives a core up under CFS); otherwise
// they spin, as MPI's blocking calls do: on 2 ranks with a core each, a 50 us sleep per poll cost
// a 16 MiB all-gather 5-12% (docs/BENCHMARKS.md). SEQMESH_POLL=spin or =sleep overrides the
// detection. True until a Session has looked (the safe choice when cores may be shared).
bool CoresShared();
// The ranks on this node (MPI_COMM_TYPE_SHARED), found when the Session started; 1 before.
int LocalRanks();
// How long a wait spins before it starts sleeping between polls, where cores are shared:
// SEQMESH_SPIN_US when set, else `fallback` (the caller's measured choice).
std::chrono::microseconds SpinWindow(std::chrono::microseconds fallback);

class Session {
 public:
  // MPI_THREAD_FUNNELED: only the thread that calls MPI uses it (OpenMP regions do not).
  Session(int* argc, char*** argv, int required = MPI_THREAD_FUNNELED);
  ~Session();
  Session(Session&& o) noexcept;
  Session& operator=(Session&&) = delete;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int thread_level() const { return provided_; }

 private:
  bool owns_ = false;
  int provided_ = 0;
};

}  // namespace seqmesh::mpi
