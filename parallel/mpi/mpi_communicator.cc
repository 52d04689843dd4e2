#include "parallel/mpi/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "parallel/mpi/mpi_check.h"

namespace seqmesh {
namespace mpi {

std::string ErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, len);
}

Comm::Comm(MPI_Comm parent) {
  SM_CHECK_MPI(MPI_Comm_dup(parent, &comm_)) << "duplicating the communicator";
  SM_CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
}

Comm::~Comm() {
  if (comm_ != MPI_COMM_NULL && !Finalized()) MPI_Comm_free(&comm_);
}

Op::Op(MPI_User_function* fn) { SM_CHECK_MPI(MPI_Op_create(fn, /*commute=*/1, &op_)); }

Op::~Op() {
  if (op_ != MPI_OP_NULL && !Finalized()) MPI_Op_free(&op_);
}

void Requests::Release() {
  if (requests_.empty() || Finalized()) return;
  for (MPI_Request& r : requests_) {
    if (r == MPI_REQUEST_NULL) continue;
    if (kind_ == Kind::kCollective) continue;  // may be neither cancelled nor freed: left to MPI
    MPI_Cancel(&r);
    MPI_Request_free(&r);
  }
  requests_.clear();
  peers_.clear();
}

}  // namespace mpi

namespace {

// The bf16 sum: inout[i] = bf16(f32(in[i]) + f32(inout[i])).
void Bf16Sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = FloatToBf16(Bf16ToFloat(a[i]) + Bf16ToFloat(b[i]));
}

int CountArg(int64_t count, const char* op) {
  SM_CHECK(count >= 0 && count <= INT_MAX)
      << op << ": count " << count << " is outside MPI's int range [0, " << INT_MAX << "]";
  return static_cast<int>(count);
}

// Operations in flight and what they are. The description is only formatted when an error is
// raised (formatting on every call cost microseconds, the whole budget of a 1 KiB collective).
class MpiWork : public detail::CommWorkState {
 public:
  MpiWork(const char* op, mpi::Requests::Kind kind) : op(op), requests(kind) {}
  std::string Describe() const {
    std::ostringstream what;
    what << op;
    if (count < 0) return what.str();
    what << " (";
    if (requests.kind() == mpi::Requests::Kind::kPointToPoint) {
      for (int i = 0; i < requests.count(); ++i)
        what << (i ? ", " : "") << (is_send[i] ? "send to " : "recv from ") << requests.peer(i);
    } else {
      what << DTypeName(dtype) << ", " << count << " elements";
      if (root >= 0) what << ", root " << root;
    }
    what << ")";
    return what.str();
  }
  const char* op;
  DType dtype = DType::kF32;
  int64_t count = 0;
  int root = -1;
  std::vector<bool> is_send;  // point-to-point: per request
  mpi::Requests requests;
  std::function<void()> on_done;  // runs once everything completed
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent, const CommOptions& options)
    : Communicator(options), comm_(parent), roll_call_comm_(parent), bf16_sum_(&Bf16Sum) {
  SM_CHECK(options.deadline.count() > 0)
      << "CommOptions::deadline must be positive, got " << options.deadline.count() << " ms";
  SM_CHECK_MPI(MPI_Comm_rank(comm_.get(), &rank_));
  SM_CHECK_MPI(MPI_Comm_size(comm_.get(), &size_));
  heard_.assign(size_, 0);
}

// The window is a quarter of the deadline, at most 1 s: every survivor times out within about
// one deadline of the others only if they wait on each other, so a rank that is merely late may
// be named too; the message says so.
std::vector<int> MpiCommunicator::RollCall() {
  constexpr int kTag = 11;
  const auto window =
      std::min<std::chrono::milliseconds>(options_.deadline / 4, std::chrono::milliseconds(1000));
  mpi::Requests recvs(mpi::Requests::Kind::kPointToPoint),
      sends(mpi::Requests::Kind::kPointToPoint);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    if (MPI_Irecv(&heard_[r], 1, MPI_INT, r, kTag, roll_call_comm_.get(), recvs.Add(r)) !=
            MPI_SUCCESS ||
        MPI_Isend(&alive_, 1, MPI_INT, r, kTag, roll_call_comm_.get(), sends.Add(r)) != MPI_SUCCESS)
      return {};  // no roll call then; the error still names the operation
  }
  const auto stop = std::chrono::steady_clock::now() + window;
  std::vector<int> indices(recvs.count());
  int remaining = recvs.count();
  while (remaining > 0 && std::chrono::steady_clock::now() < stop) {
    int completed = 0;
    if (MPI_Testsome(recvs.count(), recvs.data(), &completed, indices.data(),
                     MPI_STATUSES_IGNORE) != MPI_SUCCESS)
      return {};
    if (completed != MPI_UNDEFINED) remaining -= completed;
    std::this_thread::yield();
  }
  std::vector<int> silent;
  for (int i = 0; i < recvs.count(); ++i)
    if (!recvs.done(i)) silent.push_back(recvs.peer(i));
  return silent;  // the destructors cancel the open receives and let the sends drain
}

MPI_Datatype MpiCommunicator::Type(DType dtype, const char* op) const {
  switch (dtype) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kBF16:
      return MPI_UINT16_T;
    default:
      break;
  }
  SM_CHECK(false) << op << ": dtype " << DTypeName(dtype) << " is not supported (f32, bf16)";
  return MPI_DATATYPE_NULL;
}

MPI_Op MpiCommunicator::SumOp(DType dtype) const {
  return dtype == DType::kBF16 ? bf16_sum_.get() : MPI_SUM;
}

// A collective waits on every other rank (or, for a broadcast, on the root).
CommWork MpiCommunicator::Collective(const char* op, DType dtype, int64_t count, int root) {
  auto work = std::make_unique<MpiWork>(op, mpi::Requests::Kind::kCollective);
  work->dtype = dtype;
  work->count = count;
  work->root = root;
  return CommWork(std::move(work));
}

void MpiCommunicator::AllReduce(void* data, int64_t count, DType dtype) {
  CommWork work = Collective("AllReduce", dtype, count, -1);
  auto& rq = static_cast<MpiWork*>(work.state())->requests;
  SM_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, data, CountArg(count, "AllReduce"),
                              Type(dtype, "AllReduce"), SumOp(dtype), comm_.get(), rq.Add(-1)));
  Wait(work);
}

CommWork MpiCommunicator::StartReduceScatter(const void* send, void* recv, int64_t recv_count,
                                             DType dtype) {
  CommWork work = Collective("ReduceScatter", dtype, recv_count, -1);
  auto& rq = static_cast<MpiWork*>(work.state())->requests;
  const size_t esize = DTypeSize(dtype);
  const bool in_place =
      send == static_cast<const char*>(recv) - static_cast<size_t>(rank_) * recv_count * esize;
  // MPI's in-place reduce-scatter takes the whole input in recvbuf and leaves the result at its
  // start; it is moved to this rank's block once complete (the other blocks are clobbered).
  SM_CHECK_MPI(MPI_Ireduce_scatter_block(
      in_place ? MPI_IN_PLACE : send, in_place ? const_cast<void*>(send) : recv,
      CountArg(recv_count, "ReduceScatter"), Type(dtype, "ReduceScatter"), SumOp(dtype),
      comm_.get(), rq.Add(-1)));
  if (in_place && rank_ != 0)
    static_cast<MpiWork*>(work.state())->on_done = [send, recv, bytes = recv_count * esize] {
      std::memmove(recv, send, bytes);
    };
  return work;
}

void MpiCommunicator::ReduceScatter(const void* send, void* recv, int64_t recv_count, DType dtype) {
  CommWork work = StartReduceScatter(send, recv, recv_count, dtype);
  Wait(work);
}

CommWork MpiCommunicator::StartAllGather(const void* send, void* recv, int64_t send_count,
                                         DType dtype) {
  CommWork work = Collective("AllGather", dtype, send_count, -1);
  auto& rq = static_cast<MpiWork*>(work.state())->requests;
  const MPI_Datatype type = Type(dtype, "AllGather");
  const int n = CountArg(send_count, "AllGather");
  const bool in_place = send == static_cast<const char*>(recv) +
                                    static_cast<size_t>(rank_) * send_count * DTypeSize(dtype);
  SM_CHECK_MPI(MPI_Iallgather(in_place ? MPI_IN_PLACE : send, n, type, recv, n, type, comm_.get(),
                              rq.Add(-1)));
  return work;
}

void MpiCommunicator::AllGather(const void* send, void* recv, int64_t send_count, DType dtype) {
  CommWork work = StartAllGather(send, recv, send_count, dtype);
  Wait(work);
}

void MpiCommunicator::Broadcast(void* data, int64_t count, DType dtype, int root) {
  SM_CHECK(root >= 0 && root < size_)
      << "Broadcast: root " << root << " is not a rank of " << size_;
  CommWork work = Collective("Broadcast", dtype, count, root);
  auto& rq = static_cast<MpiWork*>(work.state())->requests;
  SM_CHECK_MPI(MPI_Ibcast(data, CountArg(count, "Broadcast"), Type(dtype, "Broadcast"), root,
                          comm_.get(), rq.Add(root)));
  Wait(work);
}

void MpiCommunicator::Barrier() {
  CommWork work = Collective("Barrier", DType::kF32, -1, -1);
  SM_CHECK_MPI(MPI_Ibarrier(comm_.get(), static_cast<MpiWork*>(work.state())->requests.Add(-1)));
  Wait(work);
}

double MpiCommunicator::AllReduceScalar(double value) {
  CommWork work = Collective("AllReduceScalar (f64)", DType::kF32, -1, -1);
  SM_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_SUM, comm_.get(),
                              static_cast<MpiWork*>(work.state())->requests.Add(-1)));
  Wait(work);
  return value;
}

// Receives are posted before sends so that a ring's messages find their receive waiting.
// Point-to-point traffic uses one tag: MPI's non-overtaking order between a pair of ranks on
// one communicator matches groups posted in the same global order on both sides.
P2PGroup MpiCommunicator::Start(std::span<const P2POp> ops) {
  constexpr int kTag = 7;
  auto work = std::make_unique<MpiWork>("P2PGroup", mpi::Requests::Kind::kPointToPoint);
  work->is_send.reserve(ops.size());
  work->requests.Reserve(ops.size());
  for (const P2POp& op : ops) {
    SM_CHECK(op.peer >= 0 && op.peer < size_)
        << "P2P op with peer " << op.peer << " outside the " << size_ << " ranks";
    SM_CHECK(op.count == 0 || op.data != nullptr)
        << "P2P op with peer " << op.peer << " has no buffer for " << op.count << " elements";
  }
  for (auto kind : {P2POp::Kind::kRecv, P2POp::Kind::kSend}) {
    for (const P2POp& op : ops) {
      if (op.kind != kind) continue;
      const int n = CountArg(op.count, "P2P op");
      const MPI_Datatype type = Type(op.dtype, "P2P op");
      if (kind == P2POp::Kind::kRecv) {
        work->is_send.push_back(false);
        SM_CHECK_MPI(
            MPI_Irecv(op.data, n, type, op.peer, kTag, comm_.get(), work->requests.Add(op.peer)))
            << "posting a receive from rank " << op.peer;
      } else {
        work->is_send.push_back(true);
        SM_CHECK_MPI(
            MPI_Isend(op.data, n, type, op.peer, kTag, comm_.get(), work->requests.Add(op.peer)))
            << "posting a send to rank " << op.peer;
      }
    }
  }
  return P2PGroup(std::move(work));
}

void MpiCommunicator::Wait(CommWork& work) {
  if (!work.pending()) return;
  auto* w = dynamic_cast<MpiWork*>(work.state());
  SM_CHECK(w != nullptr) << "MpiCommunicator::Wait got work started by another backend";
  mpi::Requests& rq = w->requests;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + options_.deadline;
  std::vector<int> indices(rq.count());
  int remaining = 0;
  for (int i = 0; i < rq.count(); ++i) remaining += !rq.done(i);
  int polls = 0;
  while (remaining > 0) {
    int completed = 0;
    SM_CHECK_MPI(
        MPI_Testsome(rq.count(), rq.data(), &completed, indices.data(), MPI_STATUSES_IGNORE))
        << w->Describe() << " failed on rank " << rank_ << " at step " << step_;
    if (completed != MPI_UNDEFINED) remaining -= completed;
    if (remaining == 0) break;
    // The clock is read every few polls: MPI_Testsome is what progresses the transfer.
    if ((++polls & 15) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::set<int> waiting;
        bool all = false;
        for (int i = 0; i < rq.count(); ++i) {
          if (rq.done(i)) continue;
          if (rq.peer(i) < 0)
            all = true;
          else
            waiting.insert(rq.peer(i));
        }
        std::ostringstream peers;
        for (int p : waiting) peers << (peers.tellp() > 0 ? ", " : "") << p;
        std::string peer_text;
        if (all) {
          std::ostringstream others;
          for (int r = 0; r < size_; ++r)
            if (r != rank_) others << (others.tellp() > 0 ? ", " : "") << r;
          peer_text = "ranks [" + others.str() + "] (one of them stopped answering)";
        } else {
          peer_text = "rank(s) [" + peers.str() + "]";
        }
        const std::string what = w->Describe();
        work.Reset();  // releases the requests (point-to-point ones are cancelled)
        std::ostringstream silent;
        for (int r : RollCall()) silent << (silent.tellp() > 0 ? ", " : "") << r;
        SM_CHECK(false) << what << " timed out after " << options_.deadline.count()
                        << " ms at step " << step_ << " on rank " << rank_ << ", waiting for "
                        << peer_text << "; silent in a roll call after the timeout: ["
                        << silent.str() << "]; the communicator is unusable now";
      }
      std::this_thread::yield();
    }
  }
  if (w->on_done) w->on_done();
  work.Reset();
}

bool MpiCommunicator::Test(CommWork& work) {
  if (!work.pending()) return true;
  auto* w = dynamic_cast<MpiWork*>(work.state());
  SM_CHECK(w != nullptr) << "MpiCommunicator::Test got work started by another backend";
  int done = 0;
  SM_CHECK_MPI(MPI_Testall(w->requests.count(), w->requests.data(), &done, MPI_STATUSES_IGNORE))
      << w->Describe() << " failed on rank " << rank_ << " at step " << step_;
  if (!done) return false;
  if (w->on_done) w->on_done();
  work.Reset();
  return true;
}

}  // namespace seqmesh
