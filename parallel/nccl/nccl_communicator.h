// The NCCL backend of Communicator (CUDA devices). Built only when CMake finds CUDA and NCCL.
// Buffers are device pointers. Operations are enqueued on the communicator's own stream
// (NCCL's in-order semantics), followed by a CUDA event; Wait polls the event and
// ncclCommGetAsyncError against the deadline and, on timeout or an asynchronous NCCL error,
// aborts the NCCL communicator (ncclCommAbort) and throws naming the operation, the peers and the
// step. Point-to-point groups are ncclGroupStart / ncclSend|ncclRecv... / ncclGroupEnd on world
// ranks. The NCCL unique id is broadcast over a bootstrap Communicator (MPI).
//
// Run on one H100 with one rank (tests/parallel/nccl_communicator_test.cc, NCCL 2.28.3); several
// ranks need several GPUs and have not run yet. The test skips without a GPU.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <utility>

#include "parallel/communicator.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

#define SM_CHECK_NCCL(expr) \
  SM_CHECK_STATUS(expr, ncclSuccess, "NCCL") << ncclGetErrorString(sm_status_) << ". "

namespace seqmesh {
namespace nccl {

// Move-only owners (STYLE.md rule 4). Destructors never throw.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  Event();
  ~Event();
  Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  Event& operator=(Event&& o) noexcept {
    std::swap(e_, o.e_);
    return *this;
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// An NCCL communicator; Abort() ends it after a failure (the destructor then does nothing more).
class Comm {
 public:
  Comm(int nranks, const ncclUniqueId& id, int rank);
  ~Comm();
  Comm(Comm&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Comm& operator=(Comm&& o) noexcept {
    std::swap(c_, o.c_);
    return *this;
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  ncclComm_t get() const { return c_; }
  void Abort();

 private:
  ncclComm_t c_ = nullptr;
};

}  // namespace nccl

class NcclCommunicator : public Communicator {
 public:
  // Collective over `bootstrap`'s ranks; uses CUDA device `device` (set current here).
  NcclCommunicator(Communicator& bootstrap, int device, const CommOptions& options = {});
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "nccl"; }
  cudaStream_t stream() const { return stream_.get(); }

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
  CommWork Enqueued(std::string what, std::vector<int> peers);

  int device_;
  int rank_ = 0;
  int size_ = 1;
  nccl::Stream stream_;
  nccl::Comm comm_;
  void* scratch_ = nullptr;  // one double on the device (AllReduceScalar, Barrier)
};

}  // namespace seqmesh
