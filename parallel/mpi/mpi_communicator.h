// The Open MPI backend of Communicator (CPU). Owns a duplicate of the communicator it is given
// (normally MPI_COMM_WORLD) with MPI_ERRORS_RETURN, so MPI failures become seqmesh::Errors and
// its traffic never matches the caller's own messages.
//
// Every operation is started non-blocking (MPI_I*) and completed by polling MPI_Testsome against
// a steady clock (yielding the core between polls): no call blocks inside MPI, so a peer that
// stops answering gives a named error at the deadline. Blocking collectives are Start + Wait.
// A timed-out wait then holds a roll call (each timed-out rank sends "alive" to all others on a
// communicator of its own and listens for a short window), so that even a collective's error
// names the rank that went silent.
// bf16 sums use a user-defined MPI_Op over MPI_UINT16_T that widens each element pair to f32,
// adds, and rounds back to bf16 (round-to-nearest-even).
//
// Must be destroyed before MPI_Finalize.
#pragma once

#include <mpi.h>

#include <vector>

#include "parallel/communicator.h"
#include "parallel/mpi/mpi_handles.h"

namespace seqmesh {

class MpiCommunicator : public Communicator {
 public:
  // MPI must be initialized (MPI_THREAD_FUNNELED or more if other threads exist).
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD, const CommOptions& options = {});

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  MPI_Comm comm() const { return comm_.get(); }

  void AllReduce(void* data, int64_t count, DType dtype) override;
  void ReduceScatter(const void* send, void* recv, int64_t recv_count, DType dtype) override;
  void AllGather(const void* send, void* recv, int64_t send_count, DType dtype) override;
  void Broadcast(void* data, int64_t count, DType dtype, int root) override;
  void Barrier() override;
  double AllReduceScalar(double value) override;

  CommWork StartReduceScatter(const void* send, void* recv, int64_t recv_count,
                              DType dtype) override;
  CommWork StartAllGather(const void* send, void* recv, int64_t send_count, DType dtype) override;
  P2PGroup Start(std::span<const P2POp> ops) override;
  void Wait(CommWork& work) override;
  bool Test(CommWork& work) override;

 private:
  MPI_Datatype Type(DType dtype, const char* op) const;
  MPI_Op SumOp(DType dtype) const;
  CommWork Collective(const char* op, DType dtype, int64_t count, int root);
  // After a timeout: tells every other rank "alive" and listens for theirs for a short window;
  // returns the ranks not heard from (the hung or dead ones, or ranks not waiting on us).
  std::vector<int> RollCall();

  mpi::Comm comm_;
  mpi::Comm roll_call_comm_;  // only for RollCall's messages
  int alive_ = 1;             // RollCall's send buffer (sends may drain after it returns)
  std::vector<int> heard_;    // RollCall's receive buffers
  mpi::Op bf16_sum_;
  // Tags of our ring collectives: one per operation in flight, cycling.
  static constexpr int kRingTagBase = 1024, kRingTags = 8192;
  int64_t ring_sequence_ = 0;
  // The tag of the next operation run as rounds of point-to-point messages (reduce-scatter,
  // 2-rank all-gather): every rank starts collectives in the same order, so the sequence agrees,
  // and a tag per operation keeps concurrent operations' messages apart.
  int NextRoundsTag() { return kRingTagBase + static_cast<int>(ring_sequence_++ % kRingTags); }
  mpi::ScratchPool scratch_pool_;  // staging blocks of the ring collectives
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace seqmesh
