#include "parallel/mpi/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "parallel/mpi/mpi_check.h"
#include "parallel/mpi/mpi_session.h"

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
  // Released unfinished (after a timeout), a send may still be reading the scratch buffers:
  // they are leaked rather than freed under it (the communicator is unusable by then anyway).
  ~MpiWork() override {
    if (!scratch) return;
    for (int i = 0; i < requests.count(); ++i)
      if (!requests.done(i)) {
        new std::shared_ptr<void>(std::move(scratch));  // deliberately leaked
        return;
      }
  }
  std::string Describe() const {
    std::ostringstream what;
    what << op;
    if (count < 0) return what.str();
    what << " (";
    if (round >= 0 || requests.kind() == mpi::Requests::Kind::kCollective) {
      what << DTypeName(dtype) << ", " << count << " elements";
      if (root >= 0) what << ", root " << root;
      if (round >= 0) what << ", ring round " << round << ": ";
    }
    if (requests.kind() == mpi::Requests::Kind::kPointToPoint) {
      for (int i = 0; i < requests.count(); ++i)
        what << (i ? ", " : "") << (is_send[i] ? "send to " : "recv from ") << requests.peer(i);
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
  // Multi-round operations (our ring collectives): runs when every request of the current round
  // completed; posts the next round and returns true, or returns false when none is left.
  std::function<bool()> next_round;
  int round = -1;  // the current round of a multi-round operation, for error messages
  std::shared_ptr<void> scratch;  // buffers the requests may use
};

// out[i] = in[i] + add[i] (bf16: each pair widened to f32, the sum rounded back).
void SumInto(void* out, const void* in, const void* add, int64_t count, DType dtype) {
  if (dtype == DType::kF32) {
    auto* o = static_cast<float*>(out);
    const auto* a = static_cast<const float*>(in);
    const auto* b = static_cast<const float*>(add);
    // Vectorized (the pointers may alias only element for element, which simd keeps correct):
    // a scalar loop cost as much as the transfer at 1 MiB.
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) o[i] = a[i] + b[i];
  } else {
    auto* o = static_cast<uint16_t*>(out);
    const auto* a = static_cast<const uint16_t*>(in);
    const auto* b = static_cast<const uint16_t*>(add);
    for (int64_t i = 0; i < count; ++i) o[i] = FloatToBf16(Bf16ToFloat(a[i]) + Bf16ToFloat(b[i]));
  }
}

// A reduce-scatter in rounds of point-to-point exchanges, progressed by Test/Wait: Post(k)
// posts round k; Finish(k) adds what it received and says whether a round k+1 follows. A round
// starts only after the previous one completed, so two staging buffers suffice.
struct ReduceScatterRounds {
  const char* send;
  char* recv;
  int64_t count;  // elements per block (the result)
  size_t bytes;   // per block
  DType dtype;
  MPI_Datatype type;
  MPI_Comm comm;
  int tag, rank, size;
  mpi::ScratchPool::Buffer stage[2];
  mpi::ScratchPool* pool = nullptr;

  virtual ~ReduceScatterRounds() {
    for (auto& b : stage) pool->Release(std::move(b));
  }
  virtual size_t StageBytes() const = 0;
  virtual void Post(int k, MpiWork& work) = 0;
  virtual bool Finish(int k) = 0;

  const char* Block(int b) const { return send + static_cast<size_t>(b) * bytes; }
  void Exchange(MpiWork& work, int k, const void* out, int64_t out_count, int to, void* in,
                int64_t in_count, int from) {
    work.round = k;
    work.is_send.assign({false, true});
    SM_CHECK_MPI(MPI_Irecv(in, CountArg(in_count, "ReduceScatter"), type, from, tag, comm,
                           work.requests.Add(from)))
        << "ReduceScatter: posting a receive from rank " << from;
    SM_CHECK_MPI(MPI_Isend(out, CountArg(out_count, "ReduceScatter"), type, to, tag, comm,
                           work.requests.Add(to)))
        << "ReduceScatter: posting a send to rank " << to;
  }
};

// Ring (Patarasuk & Yuan), any rank count: n-1 rounds; in round k rank r sends its partial sum
// of block (r-k-1) mod n to r+1 and receives the partial sum of block (r-k-2) mod n from r-1,
// adding its own contribution. After round n-2 the received block is r: with r's own block it
// is the full sum. Round k receives into stage[k%2] while sending stage[(k-1)%2].
struct RingReduceScatter : ReduceScatterRounds {
  int Mod(int x) const { return ((x % size) + size) % size; }
  size_t StageBytes() const override { return bytes; }
  void Post(int k, MpiWork& work) override {
    const void* out = k == 0 ? Block(Mod(rank - 1)) : stage[(k - 1) % 2].get();
    Exchange(work, k, out, count, Mod(rank + 1), stage[k % 2].get(), count, Mod(rank - 1));
  }
  bool Finish(int k) override {
    const int b = Mod(rank - k - 2);
    void* dst = k == size - 2 ? static_cast<void*>(recv) : stage[k % 2].get();
    SumInto(dst, stage[k % 2].get(), Block(b), count, dtype);
    return k + 1 <= size - 2;
  }
};

// Recursive halving (Thakur, Rabenseifner & Gropp), power-of-two rank counts: log2(n) rounds
// instead of n-1, the same bytes. In the round at distance d (n/2, n/4, ..., 1) rank r keeps the
// upper half of its current block range if r & d, else the lower half, sends the other half's
// partial sums to r ^ d and adds what r ^ d sends for the half it keeps; the last range is
// block r. Fewer rounds matter when ranks share cores: every round waits for the slowest rank
// to be scheduled. acc (stage[0]) holds the kept range's partial sums from round 0 on; stage[1]
// receives.
struct HalvingReduceScatter : ReduceScatterRounds {
  int lo = 0, hi = 0;  // the current block range
  int acc_base = 0;    // block index of acc's first block
  int keep_lo = 0, keep_hi = 0;
  int Distance(int k) const { return size >> (k + 1); }
  size_t StageBytes() const override { return bytes * (size / 2); }
  char* Acc(int block) { return stage[0].get() + static_cast<size_t>(block - acc_base) * bytes; }
  void Post(int k, MpiWork& work) override {
    if (k == 0) lo = 0, hi = size;
    const int d = Distance(k), mid = (lo + hi) / 2;
    const bool upper = rank & d;
    keep_lo = upper ? mid : lo;
    keep_hi = upper ? hi : mid;
    const int give_lo = upper ? lo : mid;
    const int blocks = keep_hi - keep_lo;
    const void* out = k == 0 ? Block(give_lo) : Acc(give_lo);
    Exchange(work, k, out, blocks * count, rank ^ d, stage[1].get(), blocks * count, rank ^ d);
  }
  bool Finish(int k) override {
    const int blocks = keep_hi - keep_lo;
    const bool last = Distance(k) == 1;
    if (k == 0) acc_base = keep_lo;
    // Round 0 adds to this rank's own data; later rounds to the partial sums in acc.
    const char* mine = k == 0 ? Block(keep_lo) : Acc(keep_lo);
    void* dst = last ? static_cast<void*>(recv) : Acc(keep_lo);
    SumInto(dst, stage[1].get(), mine, blocks * count, dtype);
    lo = keep_lo;
    hi = keep_hi;
    return !last;
  }
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

// Our own rounds (recursive halving for power-of-two rank counts, a ring otherwise) rather than
// MPI_Ireduce_scatter_block: Open MPI's non-blocking reduce-scatter
// (libnbc) reached only 0.59-0.84x of its blocking one at 1 MiB on 4 ranks
// (docs/BENCHMARKS.md), and a ring of point-to-point rounds is progressed by every Test, so a
// gradient bucket moves on while backward computes between polls.
CommWork MpiCommunicator::StartReduceScatter(const void* send, void* recv, int64_t recv_count,
                                             DType dtype) {
  const MPI_Datatype type = Type(dtype, "ReduceScatter");
  CountArg(recv_count, "ReduceScatter");
  const size_t bytes = static_cast<size_t>(recv_count) * DTypeSize(dtype);
  auto work = std::make_unique<MpiWork>("ReduceScatter", mpi::Requests::Kind::kPointToPoint);
  work->dtype = dtype;
  work->count = recv_count;
  const char* own = static_cast<const char*>(send) + static_cast<size_t>(rank_) * bytes;
  if (size_ == 1 || recv_count == 0) {
    if (own != recv && bytes > 0) std::memmove(recv, own, bytes);
    return CommWork(std::move(work));  // no requests: Wait returns at once
  }
  std::shared_ptr<ReduceScatterRounds> rounds;
  if ((size_ & (size_ - 1)) == 0)
    rounds = std::make_shared<HalvingReduceScatter>();
  else
    rounds = std::make_shared<RingReduceScatter>();
  rounds->send = static_cast<const char*>(send);
  rounds->recv = static_cast<char*>(recv);
  rounds->count = recv_count;
  rounds->bytes = bytes;
  rounds->dtype = dtype;
  rounds->type = type;
  rounds->comm = comm_.get();
  // Tags below kRingTagBase belong to P2P groups.
  rounds->tag = NextRoundsTag();
  rounds->rank = rank_;
  rounds->size = size_;
  // Reused across calls: fresh memory for every call cost more than the transfer (a page fault
  // per 4 KiB; 1 MiB reduce-scatters ran at a tenth of the bandwidth).
  rounds->pool = &scratch_pool_;
  rounds->stage[0] = scratch_pool_.Acquire(rounds->StageBytes());
  rounds->stage[1] = scratch_pool_.Acquire(rounds->StageBytes());
  rounds->Post(0, *work);
  work->scratch = rounds;
  MpiWork* w = work.get();
  w->next_round = [r = rounds.get(), w] {
    const int k = w->round;
    const bool more = r->Finish(k);
    w->requests.ClearCompleted();
    if (!more) return false;
    r->Post(k + 1, *w);
    return true;
  };
  return CommWork(std::move(work));
}

void MpiCommunicator::ReduceScatter(const void* send, void* recv, int64_t recv_count, DType dtype) {
  CommWork work = StartReduceScatter(send, recv, recv_count, dtype);
  Wait(work);
}

// On 2 ranks, one receive from the peer and one send to it, the local copy when both are done:
// Open MPI's own two-process algorithm (sendrecv, then the copy); libnbc's MPI_Iallgather had
// reached only 0.62-0.85x of the blocking call at 1-4 MiB there. Otherwise MPI's own
// non-blocking all-gather: rounds of our own (recursive doubling, ring; tried 2026-11-26)
// measured 0.77-0.84x of the blocking call on 4 ranks at 4-64 MiB, where libnbc's reached
// 0.93-1.27x (docs/BENCHMARKS.md).
CommWork MpiCommunicator::StartAllGather(const void* send, void* recv, int64_t send_count,
                                         DType dtype) {
  const MPI_Datatype type = Type(dtype, "AllGather");
  const int n = CountArg(send_count, "AllGather");
  const size_t bytes = static_cast<size_t>(send_count) * DTypeSize(dtype);
  const bool in_place = send == static_cast<const char*>(recv) + static_cast<size_t>(rank_) * bytes;
  if (size_ == 2) {
    auto work = std::make_unique<MpiWork>("AllGather", mpi::Requests::Kind::kPointToPoint);
    work->dtype = dtype;
    work->count = send_count;
    const int peer = 1 - rank_;
    const int tag = NextRoundsTag();
    char* out = static_cast<char*>(recv);
    SM_CHECK_MPI(MPI_Irecv(out + static_cast<size_t>(peer) * bytes, n, type, peer, tag, comm_.get(),
                           work->requests.Add(peer)));
    SM_CHECK_MPI(MPI_Isend(send, n, type, peer, tag, comm_.get(), work->requests.Add(peer)));
    if (!in_place && bytes > 0)
      work->on_done = [dst = out + static_cast<size_t>(rank_) * bytes, send, bytes] {
        std::memcpy(dst, send, bytes);
      };
    return CommWork(std::move(work));
  }
  CommWork work = Collective("AllGather", dtype, send_count, -1);
  auto& rq = static_cast<MpiWork*>(work.state())->requests;
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
  const bool shared_cores = mpi::CoresShared();
  const auto spin = mpi::SpinWindow(std::chrono::microseconds(1000));
  while (remaining > 0) {
    int completed = 0;
    SM_CHECK_MPI(
        MPI_Testsome(rq.count(), rq.data(), &completed, indices.data(), MPI_STATUSES_IGNORE))
        << w->Describe() << " failed on rank " << rank_ << " at step " << step_;
    if (completed != MPI_UNDEFINED) remaining -= completed;
    if (remaining == 0) {
      if (!w->next_round || !w->next_round()) break;
      remaining = rq.count();
      indices.resize(rq.count());
      continue;
    }
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
      // Spin for the first millisecond (a handshake round trip costs microseconds, and a
      // yield is a system call); then, where ranks share cores, sleep briefly between polls
      // (mpi::CoresShared).
      if (shared_cores && std::chrono::steady_clock::now() - start > spin)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  if (w->on_done) w->on_done();
  work.Reset();
}

bool MpiCommunicator::Test(CommWork& work) {
  if (!work.pending()) return true;
  auto* w = dynamic_cast<MpiWork*>(work.state());
  SM_CHECK(w != nullptr) << "MpiCommunicator::Test got work started by another backend";
  while (true) {
    int done = 0;
    SM_CHECK_MPI(MPI_Testall(w->requests.count(), w->requests.data(), &done, MPI_STATUSES_IGNORE))
        << w->Describe() << " failed on rank " << rank_ << " at step " << step_;
    if (!done) return false;
    if (!w->next_round || !w->next_round()) break;
  }
  if (w->on_done) w->on_done();
  work.Reset();
  return true;
}

}  // namespace seqmesh
