#include "parallel/mpi_ring_link.h"

#include <thread>

#include "parallel/mpi/mpi_session.h"
#include "runtime/check.h"

namespace seqmesh {

MpiRingLink::MpiRingLink(MPI_Comm comm, std::chrono::milliseconds deadline)
    : comm_(comm), deadline_(deadline) {}

MpiRingLink::~MpiRingLink() {
  for (auto& [tag, ex] : pending_)
    for (MPI_Request& r : ex.requests) {
      if (r == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&r);
      MPI_Request_free(&r);
    }
}

void MpiRingLink::Post(int tag, const float* send, int64_t send_count, int to, float* recv,
                       int64_t recv_count, int from) {
  SM_CHECK(pending_.count(tag) == 0) << "ring exchange with tag " << tag << " posted twice";
  SM_CHECK(send_count <= INT32_MAX && recv_count <= INT32_MAX)
      << "ring exchange of " << std::max(send_count, recv_count) << " floats exceeds MPI's count";
  Exchange ex{{MPI_REQUEST_NULL, MPI_REQUEST_NULL}, to, from};
  int rc =
      MPI_Irecv(recv, static_cast<int>(recv_count), MPI_FLOAT, from, tag, comm_, &ex.requests[0]);
  SM_CHECK(rc == MPI_SUCCESS) << "MPI_Irecv from rank " << from << " (tag " << tag
                              << ") failed with " << rc;
  rc = MPI_Isend(send, static_cast<int>(send_count), MPI_FLOAT, to, tag, comm_, &ex.requests[1]);
  SM_CHECK(rc == MPI_SUCCESS) << "MPI_Isend to rank " << to << " (tag " << tag << ") failed with "
                              << rc;
  pending_.emplace(tag, ex);
}

void MpiRingLink::Complete(int tag) {
  auto it = pending_.find(tag);
  SM_CHECK(it != pending_.end()) << "ring exchange with tag " << tag << " was never posted";
  Exchange& ex = it->second;
  const auto start = std::chrono::steady_clock::now();
  int done = 0;
  int spins = 0;
  const bool shared_cores = mpi::CoresShared();
  // No spin window: a ring member waited for is mostly one the OS has descheduled, and ring
  // passes of 4 ranks on 2 cores ran 7-9% faster without (docs/BENCHMARKS.md).
  const auto spin = mpi::SpinWindow(std::chrono::microseconds(0));
  while (true) {
    const int rc = MPI_Testall(2, ex.requests, &done, MPI_STATUSES_IGNORE);
    SM_CHECK(rc == MPI_SUCCESS) << "ring exchange (tag " << tag << ", send to rank " << ex.to
                                << ", receive from rank " << ex.from << ") failed with " << rc;
    if (done) break;
    if (std::chrono::steady_clock::now() - start > deadline_) {
      const int my_rank = [&] {
        int r = -1;
        MPI_Comm_rank(comm_, &r);
        return r;
      }();
      SM_CHECK(false) << "ring exchange timed out after " << deadline_.count() << " ms: rank "
                      << my_rank << " sending to rank " << ex.to << " and receiving from rank "
                      << ex.from << " (tag " << tag << "); a ring member stopped answering";
    }
    // Where ranks share cores (mpi::CoresShared: 4 ranks on this 2-core VM), sleep between
    // polls once past the spin window: a waiting rank that keeps its core (sched_yield hardly
    // gives it up under CFS) slows the ring member it waits for.
    if (shared_cores && (++spins & 15) == 0 && std::chrono::steady_clock::now() - start > spin)
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  pending_.erase(it);
  wait_ms_ +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace seqmesh
