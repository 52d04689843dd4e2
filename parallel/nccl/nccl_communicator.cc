#include "parallel/nccl/nccl_communicator.h"

#include <cstring>
#include <sstream>
#include <thread>

namespace seqmesh {
namespace nccl {

Stream::Stream() { SM_CHECK_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
Stream::~Stream() {
  if (s_) cudaStreamDestroy(s_);
}
Event::Event() { SM_CHECK_CUDA(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
Event::~Event() {
  if (e_) cudaEventDestroy(e_);
}
Comm::Comm(int nranks, const ncclUniqueId& id, int rank) {
  SM_CHECK_NCCL(ncclCommInitRank(&c_, nranks, id, rank));
}
Comm::~Comm() {
  if (c_) ncclCommDestroy(c_);
}
void Comm::Abort() {
  if (c_) ncclCommAbort(std::exchange(c_, nullptr));
}

}  // namespace nccl

namespace {

ncclDataType_t Type(DType dtype, const char* op) {
  SM_CHECK(dtype == DType::kF32 || dtype == DType::kBF16)
      << op << ": dtype " << DTypeName(dtype) << " is not supported (f32, bf16)";
  return dtype == DType::kF32 ? ncclFloat32 : ncclBfloat16;
}

// Makes `device` current, then creates a stream on it.
nccl::Stream StreamOn(int device) {
  SM_CHECK_CUDA(cudaSetDevice(device)) << "selecting CUDA device " << device;
  return nccl::Stream();
}

class NcclWork : public detail::CommWorkState {
 public:
  std::string what;
  std::vector<int> peers;  // empty: every other rank
  nccl::Event done;
};

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device, const CommOptions& options)
    : Communicator(options),
      device_(device),
      rank_(bootstrap.rank()),
      size_(bootstrap.size()),
      stream_(StreamOn(device)),
      comm_([&] {
        ncclUniqueId id{};
        if (bootstrap.rank() == 0) {
          SM_CHECK_NCCL(ncclGetUniqueId(&id));
        }
        static_assert(sizeof(id) % 2 == 0);
        bootstrap.Broadcast(&id, sizeof(id) / 2, DType::kBF16, 0);  // raw bytes
        return nccl::Comm(bootstrap.size(), id, bootstrap.rank());
      }()) {
  SM_CHECK_CUDA(cudaMalloc(&scratch_, sizeof(double)));
}

NcclCommunicator::~NcclCommunicator() {
  if (scratch_) cudaFree(scratch_);  // errors ignored: destructors never throw
}

CommWork NcclCommunicator::Enqueued(std::string what, std::vector<int> peers) {
  auto w = std::make_unique<NcclWork>();
  w->what = std::move(what);
  w->peers = std::move(peers);
  SM_CHECK_CUDA(cudaEventRecord(w->done.get(), stream_.get()));
  return CommWork(std::move(w));
}

void NcclCommunicator::AllReduce(void* data, int64_t count, DType dtype) {
  SM_CHECK_NCCL(ncclAllReduce(data, data, count, Type(dtype, "AllReduce"), ncclSum, comm_.get(),
                              stream_.get()));
  CommWork w = Enqueued("AllReduce", {});
  Wait(w);
}

CommWork NcclCommunicator::StartReduceScatter(const void* send, void* recv, int64_t recv_count,
                                              DType dtype) {
  SM_CHECK_NCCL(ncclReduceScatter(send, recv, recv_count, Type(dtype, "ReduceScatter"), ncclSum,
                                  comm_.get(), stream_.get()));
  return Enqueued("ReduceScatter", {});
}

void NcclCommunicator::ReduceScatter(const void* send, void* recv, int64_t recv_count,
                                     DType dtype) {
  CommWork w = StartReduceScatter(send, recv, recv_count, dtype);
  Wait(w);
}

CommWork NcclCommunicator::StartAllGather(const void* send, void* recv, int64_t send_count,
                                          DType dtype) {
  SM_CHECK_NCCL(
      ncclAllGather(send, recv, send_count, Type(dtype, "AllGather"), comm_.get(), stream_.get()));
  return Enqueued("AllGather", {});
}

void NcclCommunicator::AllGather(const void* send, void* recv, int64_t send_count, DType dtype) {
  CommWork w = StartAllGather(send, recv, send_count, dtype);
  Wait(w);
}

void NcclCommunicator::Broadcast(void* data, int64_t count, DType dtype, int root) {
  SM_CHECK(root >= 0 && root < size_)
      << "Broadcast: root " << root << " is not a rank of " << size_;
  SM_CHECK_NCCL(
      ncclBroadcast(data, data, count, Type(dtype, "Broadcast"), root, comm_.get(), stream_.get()));
  CommWork w = Enqueued("Broadcast", {root});
  Wait(w);
}

void NcclCommunicator::Barrier() { AllReduceScalar(0.0); }

double NcclCommunicator::AllReduceScalar(double value) {
  SM_CHECK_CUDA(
      cudaMemcpyAsync(scratch_, &value, sizeof(double), cudaMemcpyHostToDevice, stream_.get()));
  SM_CHECK_NCCL(
      ncclAllReduce(scratch_, scratch_, 1, ncclFloat64, ncclSum, comm_.get(), stream_.get()));
  SM_CHECK_CUDA(
      cudaMemcpyAsync(&value, scratch_, sizeof(double), cudaMemcpyDeviceToHost, stream_.get()));
  CommWork w = Enqueued("AllReduceScalar", {});
  Wait(w);
  return value;
}

P2PGroup NcclCommunicator::Start(std::span<const P2POp> ops) {
  std::ostringstream what;
  what << "P2PGroup (";
  std::vector<int> peers;
  for (size_t i = 0; i < ops.size(); ++i) {
    SM_CHECK(ops[i].peer >= 0 && ops[i].peer < size_)
        << "P2P op with peer " << ops[i].peer << " outside the " << size_ << " ranks";
    what << (i ? ", " : "") << (ops[i].kind == P2POp::Kind::kSend ? "send to " : "recv from ")
         << ops[i].peer;
    peers.push_back(ops[i].peer);
  }
  what << ")";
  SM_CHECK_NCCL(ncclGroupStart());
  for (const P2POp& op : ops) {
    const ncclDataType_t t = Type(op.dtype, "P2P op");
    if (op.kind == P2POp::Kind::kSend)
      SM_CHECK_NCCL(ncclSend(op.data, op.count, t, op.peer, comm_.get(), stream_.get()));
    else
      SM_CHECK_NCCL(ncclRecv(op.data, op.count, t, op.peer, comm_.get(), stream_.get()));
  }
  SM_CHECK_NCCL(ncclGroupEnd());
  return Enqueued(what.str(), std::move(peers));
}

void NcclCommunicator::Wait(CommWork& work) {
  if (!work.pending()) return;
  auto* w = dynamic_cast<NcclWork*>(work.state());
  SM_CHECK(w != nullptr) << "NcclCommunicator::Wait got work started by another backend";
  const auto deadline = std::chrono::steady_clock::now() + options_.deadline;
  while (true) {
    const cudaError_t q = cudaEventQuery(w->done.get());
    if (q == cudaSuccess) break;
    SM_CHECK(q == cudaErrorNotReady) << w->what << " failed on rank " << rank_ << " at step "
                                     << step_ << ": " << cudaGetErrorString(q);
    ncclResult_t async = ncclSuccess;
    SM_CHECK_NCCL(ncclCommGetAsyncError(comm_.get(), &async));
    const bool late = std::chrono::steady_clock::now() > deadline;
    if (async != ncclSuccess || late) {
      std::ostringstream peers;
      if (w->peers.empty()) {
        for (int r = 0; r < size_; ++r)
          if (r != rank_) peers << (peers.tellp() > 0 ? ", " : "") << r;
      } else {
        for (int p : w->peers) peers << (peers.tellp() > 0 ? ", " : "") << p;
      }
      const std::string what = w->what;
      comm_.Abort();  // unblocks the stream; the communicator is unusable from here
      SM_CHECK(false) << what << (late ? " timed out after " : " failed (NCCL async error ")
                      << (late ? std::to_string(options_.deadline.count()) + " ms"
                               : std::string(ncclGetErrorString(async)) + ")")
                      << " at step " << step_ << " on rank " << rank_
                      << (size_ == 1 ? std::string(" (a world of one rank)")
                                     : ", waiting for ranks [" + peers.str() + "]")
                      << "; the communicator is unusable now";
    }
    std::this_thread::yield();
  }
  work.Reset();
}

bool NcclCommunicator::Test(CommWork& work) {
  if (!work.pending()) return true;
  auto* w = dynamic_cast<NcclWork*>(work.state());
  SM_CHECK(w != nullptr) << "NcclCommunicator::Test got work started by another backend";
  const cudaError_t q = cudaEventQuery(w->done.get());
  if (q == cudaErrorNotReady) return false;
  SM_CHECK(q == cudaSuccess) << w->what << " failed on rank " << rank_ << " at step " << step_
                             << ": " << cudaGetErrorString(q);
  work.Reset();
  return true;
}

}  // namespace seqmesh
