#include "offload/pinned_arena.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#if defined(SEQMESH_WITH_CUDA)
#include <cuda_runtime.h>
#endif

#include "runtime/check.h"

namespace seqmesh {
namespace {

size_t SlotBytes(const PinnedPool& pool) { return AlignUp(pool.buffer_bytes); }

void CheckPools(const std::vector<PinnedPool>& pools) {
  std::set<std::string> names;
  for (const PinnedPool& pool : pools) {
    SM_CHECK(!pool.name.empty()) << "offload: a pinned pool has no name";
    SM_CHECK(names.insert(pool.name).second)
        << "offload: two pinned pools are named '" << pool.name << "'";
    SM_CHECK(pool.buffer_bytes > 0)
        << "offload: pinned pool '" << pool.name << "' has buffer_bytes = 0";
    SM_CHECK(pool.count >= 1) << "offload: pinned pool '" << pool.name
                              << "' has count = " << pool.count << " (at least 1)";
  }
}

std::string MemlockLimitText() {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "unknown";
  if (limit.rlim_cur == RLIM_INFINITY) return "unlimited";
  return std::to_string(limit.rlim_cur) + " bytes";
}

// mlock failed with `error`: one line naming the limit, the size asked and the remedies.
[[noreturn]] void ThrowLockFailure(size_t bytes, int error) {
  SM_CHECK(false) << "offload: cannot lock " << bytes << " bytes of pinned memory ("
                  << std::strerror(error) << "): RLIMIT_MEMLOCK's soft limit is "
                  << MemlockLimitText()
                  << "; raise it (`ulimit -l unlimited`, or a memlock line in "
                     "/etc/security/limits.conf) or set offload.pin_memory = false";
  __builtin_unreachable();
}

// mmap, then MADV_HUGEPAGE before the first touch, then populate. Transparent huge pages give
// the kernel 2 MiB segments for each registered io_uring buffer instead of 4 KiB pages: SSD
// reads of 8 MiB blocks at queue depth 32 ran about 12% faster on the development VM
// (docs/BENCHMARKS.md). Best effort: where THP is off the region is plain 4 KiB pages, the same
// size either way (THP never extends a mapping).
std::byte* MapPopulated(size_t bytes) {
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  SM_CHECK(base != MAP_FAILED) << "offload: cannot map " << bytes
                               << " bytes for the pinned arena: " << std::strerror(errno);
  madvise(base, bytes, MADV_HUGEPAGE);
  if (madvise(base, bytes, MADV_POPULATE_WRITE) == 0) return static_cast<std::byte*>(base);
  const int error = errno;
  if (error == EINVAL) {  // before Linux 5.14: fault each page in by hand
    auto* region = static_cast<volatile char*>(base);
    for (size_t at = 0; at < bytes; at += kOffloadAlignment) region[at] = 0;
    return static_cast<std::byte*>(base);
  }
  munmap(base, bytes);
  SM_CHECK(false) << "offload: cannot populate " << bytes
                  << " bytes for the pinned arena: " << std::strerror(error);
  return nullptr;  // not reached
}

#if defined(SEQMESH_WITH_CUDA)
void RegisterWithCuda(std::byte* base, size_t bytes) {
  cudaError_t status = cudaHostRegister(base, bytes, cudaHostRegisterDefault);
  SM_CHECK(status == cudaSuccess) << "offload: cudaHostRegister of the pinned arena (" << bytes
                                  << " bytes) failed: " << cudaGetErrorString(status);
}
#endif

}  // namespace

PinnedArena::PinnedArena(std::vector<PinnedPool> pools, bool pin) : pools_(std::move(pools)) {
  CheckPools(pools_);
  for (const PinnedPool& pool : pools_) {
    pool_offset_.push_back(bytes_);
    bytes_ += SlotBytes(pool) * static_cast<size_t>(pool.count);
  }
  if (bytes_ == 0) return;
  base_ = MapPopulated(bytes_);
  if (pin) {
    if (mlock(base_, bytes_) != 0) {
      const int error = errno;
      munmap(base_, bytes_);
      base_ = nullptr;
      ThrowLockFailure(bytes_, error);
    }
    pinned_ = true;
  }
#if defined(SEQMESH_WITH_CUDA)
  try {
    RegisterWithCuda(base_, bytes_);
  } catch (...) {
    Release();
    throw;
  }
#endif
}

PinnedArena::~PinnedArena() { Release(); }

PinnedArena::PinnedArena(PinnedArena&& other) noexcept
    : pools_(std::move(other.pools_)),
      pool_offset_(std::move(other.pool_offset_)),
      base_(std::exchange(other.base_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      pinned_(std::exchange(other.pinned_, false)) {
  other.pools_.clear();
  other.pool_offset_.clear();
}

PinnedArena& PinnedArena::operator=(PinnedArena&& other) noexcept {
  if (this != &other) {
    Release();
    pools_ = std::move(other.pools_);
    pool_offset_ = std::move(other.pool_offset_);
    base_ = std::exchange(other.base_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    pinned_ = std::exchange(other.pinned_, false);
    other.pools_.clear();
    other.pool_offset_.clear();
  }
  return *this;
}

void PinnedArena::Release() {
  if (base_ != nullptr) {
#if defined(SEQMESH_WITH_CUDA)
    cudaHostUnregister(base_);
#endif
    munmap(base_, bytes_);  // also unlocks
  }
  base_ = nullptr;
  bytes_ = 0;
  pinned_ = false;
}

std::span<std::byte> PinnedArena::buffer(const std::string& pool, int i) const {
  for (size_t p = 0; p < pools_.size(); ++p) {
    if (pools_[p].name != pool) continue;
    SM_CHECK(i >= 0 && i < pools_[p].count)
        << "offload: pinned pool '" << pool << "' has " << pools_[p].count << " buffers; buffer "
        << i << " asked";
    const size_t offset = pool_offset_[p] + static_cast<size_t>(i) * SlotBytes(pools_[p]);
    return {base_ + offset, pools_[p].buffer_bytes};
  }
  std::ostringstream names;
  for (const PinnedPool& p : pools_) names << (names.tellp() > 0 ? ", " : "") << p.name;
  SM_CHECK(false) << "offload: no pinned pool named '" << pool
                  << "' (pools: " << (pools_.empty() ? "none" : names.str()) << ")";
  return {};
}

std::vector<std::span<std::byte>> PinnedArena::all_buffers() const {
  std::vector<std::span<std::byte>> buffers;
  for (const PinnedPool& pool : pools_)
    for (int i = 0; i < pool.count; ++i) buffers.push_back(buffer(pool.name, i));
  return buffers;
}

ProcessMemory ReadProcessMemory() {
  std::ifstream status("/proc/self/status");
  SM_CHECK(status.good()) << "offload: cannot read /proc/self/status";
  ProcessMemory memory;
  const std::pair<const char*, size_t*> fields[] = {{"VmLck:", &memory.vm_lck},
                                                    {"VmHWM:", &memory.vm_hwm},
                                                    {"VmRSS:", &memory.vm_rss},
                                                    {"RssAnon:", &memory.rss_anon}};
  std::string line;
  while (std::getline(status, line)) {
    for (const auto& [key, value] : fields) {
      if (line.rfind(key, 0) != 0) continue;
      std::istringstream in(line.substr(std::strlen(key)));
      size_t kib = 0;
      in >> kib;  // "   1234 kB"
      *value = kib * 1024;
    }
  }
  return memory;
}

}  // namespace seqmesh
