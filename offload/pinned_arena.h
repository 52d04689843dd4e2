// PinnedArena: the one page-locked host region of a process (DESIGN.md section 7; MemAscend's
// adaptive buffer pool and alignment-free pinned allocation).
//
// Sized once, at start, from the schedule (the caller lists its pools), and never grown: one
// mmap of exactly the sum of the pools (each buffer rounded up to 4 KiB, never to a power of two),
// populated at once (transparent huge pages asked for first, where the kernel offers them),
// locked with mlock unless `pin` is false. A pool is a size class (embedding/lm_head, MLP
// projections, attention projections, optimizer sub-group staging, ...) holding `count` buffers of
// `buffer_bytes` each; buffers are 4 KiB aligned, so O_DIRECT and registered io_uring buffers can
// use them as they are. When the CUDA backend is built the region is also registered with CUDA
// (cudaHostRegister) so device copies from it are asynchronous.
//
// Failure to lock (RLIMIT_MEMLOCK without CAP_IPC_LOCK) is an error that names the limit, the size
// asked and the remedies (`ulimit -l`, limits.conf, or `offload.pin_memory = false`); the arena
// never falls back to unpinned memory on its own.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace seqmesh {

inline constexpr size_t kOffloadAlignment = 4096;  // page, O_DIRECT and disk physical block
inline size_t AlignUp(size_t bytes, size_t to = kOffloadAlignment) {
  return (bytes + to - 1) / to * to;
}

struct PinnedPool {
  std::string name;
  size_t buffer_bytes = 0;  // each buffer's usable size (its slot is rounded up to 4 KiB)
  int count = 1;
};

class PinnedArena {
 public:
  PinnedArena() = default;  // empty: no pools, no memory
  PinnedArena(std::vector<PinnedPool> pools, bool pin);
  ~PinnedArena();
  PinnedArena(PinnedArena&& other) noexcept;
  PinnedArena& operator=(PinnedArena&& other) noexcept;
  PinnedArena(const PinnedArena&) = delete;
  PinnedArena& operator=(const PinnedArena&) = delete;

  // Buffer i of the named pool (buffer_bytes long, 4 KiB aligned). Unknown names and indices are
  // errors naming the pool.
  std::span<std::byte> buffer(const std::string& pool, int i = 0) const;
  const std::vector<PinnedPool>& pools() const { return pools_; }

  std::byte* data() const { return base_; }
  size_t bytes() const { return bytes_; }  // the whole region: what VmLck grows by when pinned
  bool pinned() const { return pinned_; }
  // Every buffer as one span each, in pool order (what an SSD engine registers with io_uring).
  std::vector<std::span<std::byte>> all_buffers() const;

 private:
  void Release();
  std::vector<PinnedPool> pools_;
  std::vector<size_t> pool_offset_;  // byte offset of each pool's first buffer
  std::byte* base_ = nullptr;
  size_t bytes_ = 0;
  bool pinned_ = false;
};

// This process's memory figures from /proc/self/status, in bytes.
struct ProcessMemory {
  size_t vm_lck = 0;    // VmLck: locked
  size_t vm_hwm = 0;    // VmHWM: peak resident
  size_t vm_rss = 0;    // VmRSS
  size_t rss_anon = 0;  // RssAnon
};
ProcessMemory ReadProcessMemory();

}  // namespace seqmesh
