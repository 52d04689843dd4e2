#include "runtime/cuda/stream.h"

#include "runtime/cuda/cuda_check.h"

namespace seqmesh::cuda {

CudaStream::CudaStream() {
  SM_CHECK_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)) << "creating a stream";
}
CudaStream::~CudaStream() {
  if (s_) cudaStreamDestroy(s_);
}
void CudaStream::Synchronize() const {
  SM_CHECK_CUDA(cudaStreamSynchronize(s_)) << "a kernel or copy on this stream failed";
}

CudaEvent::CudaEvent(bool timing) {
  SM_CHECK_CUDA(cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming))
      << "creating an event";
}
CudaEvent::~CudaEvent() {
  if (e_) cudaEventDestroy(e_);
}
void CudaEvent::Record(const CudaStream& stream) const {
  SM_CHECK_CUDA(cudaEventRecord(e_, stream.get()));
}
void CudaEvent::MakeWait(const CudaStream& stream) const {
  SM_CHECK_CUDA(cudaStreamWaitEvent(stream.get(), e_, 0));
}
void CudaEvent::Synchronize() const {
  SM_CHECK_CUDA(cudaEventSynchronize(e_)) << "work before the event failed";
}
float CudaEvent::ElapsedMs(const CudaEvent& start) const {
  float ms = 0;
  SM_CHECK_CUDA(cudaEventElapsedTime(&ms, start.get(), e_));
  return ms;
}

}  // namespace seqmesh::cuda
