// IoRing: one io_uring (move-only RAII) with registered files and, when asked, registered
// buffers; the SSD engine's I/O thread is its only user (offload/ssd_engine.cc).
//
// Transfers name a registered file by its index (IOSQE_FIXED_FILE). A transfer whose bytes lie
// inside one registered buffer goes out as read_fixed/write_fixed with that buffer's index;
// any other address as a plain read/write. liburing stays behind this header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

struct io_uring;
struct io_uring_sqe;

namespace seqmesh {

class IoRing {
 public:
  // A ring of `entries` submission slots with `files` registered as indices 0, 1, ...
  IoRing(unsigned entries, const std::vector<int>& files);
  ~IoRing();
  IoRing(IoRing&&) noexcept;
  IoRing& operator=(IoRing&&) noexcept;
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;

  // Registers `buffers` for fixed transfers. The kernel may refuse (a buffer over 1 GiB, too
  // many buffers, RLIMIT_MEMLOCK without CAP_IPC_LOCK): then false, with the reason in *why, and
  // every transfer stays a plain one.
  bool RegisterBuffers(const std::vector<std::span<std::byte>>& buffers, std::string* why);
  bool has_fixed_buffers() const { return !fixed_.empty(); }

  // Queue one transfer of `bytes` at `offset` of registered file `file`; `tag` comes back with
  // its completion. Returns whether it used a registered buffer. The ring must have a free
  // submission slot (its owner keeps at most `entries` transfers in flight).
  bool QueueRead(int file, std::byte* dst, unsigned bytes, uint64_t offset, uint64_t tag);
  bool QueueWrite(int file, const std::byte* src, unsigned bytes, uint64_t offset, uint64_t tag);
  void Submit();  // everything queued since the last call

  struct Completion {
    uint64_t tag;
    int result;  // bytes transferred, or -errno
  };
  // Blocks until at least one completion is ready, then puts all that are into *ready (cleared
  // first; the caller reuses it, so reaping allocates nothing once it has grown).
  void WaitCompletions(std::vector<Completion>* ready);

 private:
  struct FixedBuffer {
    const std::byte* begin;
    const std::byte* end;
    int index;
  };
  struct RingCloser {
    void operator()(io_uring* ring) const;
  };
  int FixedIndex(const std::byte* addr, size_t bytes) const;  // -1: not in a registered buffer
  ::io_uring_sqe* NextSqe();

  std::unique_ptr<io_uring, RingCloser> ring_;
  std::vector<FixedBuffer> fixed_;  // sorted by address
};

}  // namespace seqmesh
