#include "parallel/mpi/mpi_session.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <utility>

#include "parallel/mpi/mpi_check.h"
#include "parallel/mpi/mpi_handles.h"

namespace seqmesh::mpi {
namespace {

std::atomic<bool> cores_shared{true};
std::atomic<int> node_ranks{1};

// Collective over MPI_COMM_WORLD (every rank constructs its Session at start).
bool DetectCoresShared() {
  MPI_Comm node = MPI_COMM_NULL;
  SM_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int local_ranks = 1;
  MPI_Comm_size(node, &local_ranks);
  MPI_Comm_free(&node);
  node_ranks.store(local_ranks, std::memory_order_relaxed);
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  bool shared = cpus > 0 && local_ranks > cpus;
  if (const char* v = std::getenv("SEQMESH_POLL")) {
    const std::string mode = v;
    SM_CHECK(mode == "spin" || mode == "sleep")
        << "SEQMESH_POLL=" << mode << ": expected spin or sleep";
    shared = mode == "sleep";
  }
  return shared;
}

}  // namespace

bool CoresShared() { return cores_shared.load(std::memory_order_relaxed); }
int LocalRanks() { return node_ranks.load(std::memory_order_relaxed); }

std::chrono::microseconds SpinWindow(std::chrono::microseconds fallback) {
  static const long long env = [] {
    const char* v = std::getenv("SEQMESH_SPIN_US");
    if (!v) return -1LL;
    char* end = nullptr;
    const long long us = std::strtoll(v, &end, 10);
    SM_CHECK(end && *end == '\0' && us >= 0)
        << "SEQMESH_SPIN_US=" << v << ": expected microseconds >= 0";
    return us;
  }();
  return env >= 0 ? std::chrono::microseconds(env) : fallback;
}

Session::Session(int* argc, char*** argv, int required) {
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", /*overwrite=*/0);
  SM_CHECK_MPI(MPI_Init_thread(argc, argv, required, &provided_));
  owns_ = true;
  SM_CHECK(provided_ >= required) << "MPI provides thread level " << provided_ << ", need "
                                  << required;
  cores_shared.store(DetectCoresShared(), std::memory_order_relaxed);
}

Session::~Session() {
  if (owns_ && !Finalized()) MPI_Finalize();
}

Session::Session(Session&& o) noexcept
    : owns_(std::exchange(o.owns_, false)), provided_(o.provided_) {}

}  // namespace seqmesh::mpi
