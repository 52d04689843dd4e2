// RingLink over MPI point-to-point on one communicator (the world: no communicator per ring).
// Exchanges are MPI_Isend/MPI_Irecv pairs completed by polling with a deadline, so a ring
// member that stops answering gives an error naming the tag and the peers instead of a hang.
#pragma once

#include <mpi.h>

#include <chrono>
#include <map>

#include "parallel/ring_attention.h"

namespace seqmesh {

class MpiRingLink : public RingLink {
 public:
  MpiRingLink(MPI_Comm comm, std::chrono::milliseconds deadline);
  ~MpiRingLink() override;  // cancels what was posted and never completed
  MpiRingLink(const MpiRingLink&) = delete;
  MpiRingLink& operator=(const MpiRingLink&) = delete;

  void Post(int tag, const float* send, int64_t send_count, int to, float* recv, int64_t recv_count,
            int from) override;
  void Complete(int tag) override;
  // Total time spent inside Complete (waiting for ring partners), ms.
  double wait_ms() const { return wait_ms_; }

 private:
  struct Exchange {
    MPI_Request requests[2];
    int to, from;
  };
  MPI_Comm comm_;
  std::chrono::milliseconds deadline_;
  std::map<int, Exchange> pending_;
  double wait_ms_ = 0;
};

}  // namespace seqmesh
