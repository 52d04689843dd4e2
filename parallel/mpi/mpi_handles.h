// Move-only owners of MPI handles (STYLE.md rule 4): a duplicated communicator, a user-defined
// reduction, and a request. Destructors never throw and do nothing once MPI is finalized.
#pragma once

#include <mpi.h>

#include <memory>
#include <utility>
#include <vector>

namespace seqmesh::mpi {

inline bool Finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// A duplicate of a communicator, with MPI_ERRORS_RETURN set on it.
class Comm {
 public:
  Comm() = default;
  explicit Comm(MPI_Comm parent);
  ~Comm();
  Comm(Comm&& o) noexcept : comm_(std::exchange(o.comm_, MPI_COMM_NULL)) {}
  Comm& operator=(Comm&& o) noexcept {
    std::swap(comm_, o.comm_);
    return *this;
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// A user-defined commutative reduction.
class Op {
 public:
  Op() = default;
  explicit Op(MPI_User_function* fn);
  ~Op();
  Op(Op&& o) noexcept : op_(std::exchange(o.op_, MPI_OP_NULL)) {}
  Op& operator=(Op&& o) noexcept {
    std::swap(op_, o.op_);
    return *this;
  }
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;
  MPI_Op get() const { return op_; }

 private:
  MPI_Op op_ = MPI_OP_NULL;
};

// Requests in flight, of one kind, with what each waits for (a peer rank, or -1 for all ranks
// of a collective). Released unfinished, point-to-point requests are cancelled (receives) and
// freed (MPI lets a freed send drain). A collective request can be neither cancelled nor freed
// (MPI-3.1 section 5.12), so it is left to MPI: that is why a timed-out communicator is poisoned.
class Requests {
 public:
  enum class Kind { kPointToPoint, kCollective };
  explicit Requests(Kind kind) : kind_(kind) {}
  ~Requests() { Release(); }
  Requests(Requests&& o) noexcept = default;
  Requests& operator=(Requests&& o) noexcept = default;
  Requests(const Requests&) = delete;
  Requests& operator=(const Requests&) = delete;

  // A slot for one more request waiting on `peer`.
  MPI_Request* Add(int peer) {
    requests_.push_back(MPI_REQUEST_NULL);
    peers_.push_back(peer);
    return &requests_.back();
  }
  void Reserve(size_t n) {
    requests_.reserve(n);
    peers_.reserve(n);
  }
  int count() const { return static_cast<int>(requests_.size()); }
  MPI_Request* data() { return requests_.data(); }
  int peer(int i) const { return peers_[i]; }
  bool done(int i) const { return requests_[i] == MPI_REQUEST_NULL; }
  Kind kind() const { return kind_; }
  // Forgets requests that all completed, so the slots can be reused by the next round of a
  // multi-round operation.
  void ClearCompleted() {
    requests_.clear();
    peers_.clear();
  }
  void Release();

 private:
  std::vector<MPI_Request> requests_;
  std::vector<int> peers_;
  Kind kind_;
};

// Staging buffers reused across operations (a buffer in use by an operation in flight is owned
// by it and comes back when the operation completes). Not thread-safe: one communicator is used
// from one thread.
class ScratchPool {
 public:
  struct Buffer {
    std::unique_ptr<char[]> data;
    size_t size = 0;
    char* get() const { return data.get(); }
  };
  // A buffer of at least `bytes` (contents undefined).
  Buffer Acquire(size_t bytes) {
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].size < bytes) continue;
      Buffer b = std::move(free_[i]);
      free_.erase(free_.begin() + i);
      return b;
    }
    return {std::unique_ptr<char[]>(new char[bytes > 0 ? bytes : 1]), bytes};
  }
  void Release(Buffer b) {
    // Keep a few; a pool that grew for one large call must not hold its memory forever.
    if (b.data && free_.size() < kKeep) free_.push_back(std::move(b));
  }

 private:
  static constexpr size_t kKeep = 16;
  std::vector<Buffer> free_;
};

}  // namespace seqmesh::mpi
