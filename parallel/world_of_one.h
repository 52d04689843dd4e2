// A world of one rank without MPI: `seqmesh train` runs HdpStep on it (DESIGN.md section 3), and
// NCCL bootstraps from it. Every collective is the identity on the caller's memory (a copy where
// send and receive differ); there is no peer, so point-to-point and ring exchanges fail loudly.
#pragma once

#include "parallel/communicator.h"
#include "parallel/ring_attention.h"

namespace seqmesh {

class WorldOfOne : public Communicator {
 public:
  WorldOfOne() : Communicator(CommOptions{}) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend() const override { return "world-of-one"; }
  void AllReduce(void*, int64_t, DType) override {}
  void ReduceScatter(const void* send, void* recv, int64_t recv_count, DType dtype) override;
  void AllGather(const void* send, void* recv, int64_t send_count, DType dtype) override;
  void Broadcast(void*, int64_t, DType, int root) override;
  void Barrier() override {}
  double AllReduceScalar(double value) override { return value; }
  CommWork StartReduceScatter(const void* send, void* recv, int64_t recv_count,
                              DType dtype) override;
  CommWork StartAllGather(const void* send, void* recv, int64_t send_count, DType dtype) override;
  P2PGroup Start(std::span<const P2POp> ops) override;
  void Wait(CommWork&) override {}
  bool Test(CommWork&) override { return true; }
};

// The ring link of a world of one: a plan that rings a sequence cannot run here.
class NoRingLink : public RingLink {
 public:
  void Post(int tag, const float*, int64_t, int to, float*, int64_t, int from) override;
  void Complete(int) override {}
};

}  // namespace seqmesh
