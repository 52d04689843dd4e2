// Move-only owners of CUDA streams and events (STYLE.md rule 4). Destructors never throw (errors
// on destroy are ignored: a failed context cannot be repaired there).
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace seqmesh::cuda {

// A non-blocking stream: it does not synchronize with the legacy default stream.
class CudaStream {
 public:
  CudaStream();
  ~CudaStream();
  CudaStream(CudaStream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  CudaStream& operator=(CudaStream&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return s_; }
  // Blocks until everything enqueued so far has run; an asynchronous kernel error surfaces here.
  void Synchronize() const;

 private:
  cudaStream_t s_ = nullptr;
};

// An event; `timing` events can be used with ElapsedMs (benchmarks), others are cheaper.
class CudaEvent {
 public:
  explicit CudaEvent(bool timing = false);
  ~CudaEvent();
  CudaEvent(CudaEvent&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& o) noexcept {
    std::swap(e_, o.e_);
    return *this;
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return e_; }
  void Record(const CudaStream& stream) const;
  // `stream` waits (on the device) for the work before this event's last Record.
  void MakeWait(const CudaStream& stream) const;
  void Synchronize() const;
  // Milliseconds from `start` to this event (both recorded, both timing events).
  float ElapsedMs(const CudaEvent& start) const;

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace seqmesh::cuda
