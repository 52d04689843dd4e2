// Communicator: collectives and batched point-to-point over all ranks of a job (the world), for
// f32 and bf16. Backends: parallel/mpi (CPU, Open MPI) and parallel/nccl (CUDA, when built).
//
// Invariants every backend keeps:
// - Every wait has a deadline (CommOptions::deadline). A peer that does not answer in time gives
//   a seqmesh::Error naming the operation, the peer ranks involved and the step (SetStep), never
//   a silent hang: backends poll their requests against a clock and never block in the library.
//   (The MPI backend then holds a roll call so that even a collective names the silent rank.)
// - After such an error the communicator is poisoned: operations in flight may still read or
//   write their buffers, so the caller keeps those buffers alive and the process exits (the
//   process is the unit of recovery, docs/PARALLEL.md).
// - Point-to-point groups address world ranks, so a ring over any ordered list of ranks needs no
//   communicator of its own. Every rank posts its groups in one global order (the plan's), which
//   rules out deadlock; ops in one group complete together.
//
// Double-buffered ring exchange (ring attention):
//   P2POp ops[] = {P2POp::Send(next, block[cur], n, kF32), P2POp::Recv(prev, block[1-cur], n,
//   kF32)}; P2PGroup g = comm.Start(ops);   // returns at once
//   ...compute on block[cur]...
//   comm.Wait(g);                   // block[1-cur] now holds prev's block
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/check.h"  // seqmesh::Error, thrown by every operation
#include "runtime/dtype.h"

namespace seqmesh {

struct CommOptions {
  // The longest any wait may take before it fails with a named error.
  std::chrono::milliseconds deadline{std::chrono::seconds(300)};
};

struct P2POp {
  enum class Kind { kSend, kRecv };
  Kind kind;
  int peer;    // world rank
  void* data;  // count elements of dtype; a send's buffer is only read
  int64_t count;
  DType dtype;

  static P2POp Send(int peer, const void* data, int64_t count, DType dtype) {
    return {Kind::kSend, peer, const_cast<void*>(data), count, dtype};
  }
  static P2POp Recv(int peer, void* data, int64_t count, DType dtype) {
    return {Kind::kRecv, peer, data, count, dtype};
  }
};

namespace detail {
// What a backend keeps for operations in flight. The destructor of an unfinished one releases
// its requests safely (cancels receives, lets sends drain) and must not throw.
class CommWorkState {
 public:
  virtual ~CommWorkState() = default;
};
}  // namespace detail

// Move-only handle to operations in flight (a point-to-point group or a non-blocking
// collective), completed by Communicator::Wait. Destroying one that was never waited for
// releases its requests; its buffers must then not be reused until the process exits.
class CommWork {
 public:
  CommWork() = default;
  explicit CommWork(std::unique_ptr<detail::CommWorkState> state) : state_(std::move(state)) {}
  CommWork(CommWork&&) noexcept = default;
  CommWork& operator=(CommWork&&) noexcept = default;
  CommWork(const CommWork&) = delete;
  CommWork& operator=(const CommWork&) = delete;

  bool pending() const { return state_ != nullptr; }
  detail::CommWorkState* state() const { return state_.get(); }
  void Reset() { state_.reset(); }

 private:
  std::unique_ptr<detail::CommWorkState> state_;
};
using P2PGroup = CommWork;

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;

  // The training step named in timeout errors.
  void SetStep(int64_t step) { step_ = step; }
  int64_t step() const { return step_; }
  const CommOptions& options() const { return options_; }

  // In place: data (count elements) becomes the sum over all ranks. bf16 sums widen each pair
  // to f32 and round the result to bf16.
  virtual void AllReduce(void* data, int64_t count, DType dtype) = 0;
  // send holds size() blocks of recv_count elements; recv gets the sum of block rank() over all
  // ranks. recv may be send + rank() * recv_count (in place).
  virtual void ReduceScatter(const void* send, void* recv, int64_t recv_count, DType dtype) = 0;
  // recv gets every rank's send_count elements, in rank order. send may be
  // recv + rank() * send_count (in place).
  virtual void AllGather(const void* send, void* recv, int64_t send_count, DType dtype) = 0;
  virtual void Broadcast(void* data, int64_t count, DType dtype, int root) = 0;
  virtual void Barrier() = 0;
  // The sum of one double over all ranks (norms, token counts).
  virtual double AllReduceScalar(double value) = 0;

  // Non-blocking forms of the above, completed by Wait (gradient buckets reduced while backward
  // continues).
  virtual CommWork StartReduceScatter(const void* send, void* recv, int64_t recv_count,
                                      DType dtype) = 0;
  virtual CommWork StartAllGather(const void* send, void* recv, int64_t send_count,
                                  DType dtype) = 0;

  // Posts a group of sends and receives (peers are world ranks; at most one receive per peer
  // and per group is matched in posting order) and returns at once.
  virtual P2PGroup Start(std::span<const P2POp> ops) = 0;
  // Completes everything in `work` within the deadline, or throws naming the operation, the
  // peers still outstanding and the step. `work` is empty afterwards.
  virtual void Wait(CommWork& work) = 0;
  // Polls `work` once without waiting (progresses it: MPI moves non-blocking collectives only
  // inside MPI calls); true, and `work` empty, once everything in it completed.
  virtual bool Test(CommWork& work) = 0;

 protected:
  explicit Communicator(const CommOptions& options) : options_(options) {}
  CommOptions options_;
  int64_t step_ = -1;
};

}  // namespace seqmesh
