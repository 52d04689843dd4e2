// SsdEngine: one rank's offloaded bytes on SSD (DESIGN.md section 7).
//
// One scratch file per engine, created unnamed (O_TMPFILE) in the configured directory, so that
// nothing is left behind after exit or after kill -9: the kernel frees the blocks when the last
// descriptor closes. Where O_TMPFILE is refused the file is created with a name and unlinked at
// once. The file is preallocated (fallocate) to the sum of its extents, each a 4 KiB aligned,
// fixed-size region listed in an offset table: no file per tensor, no size mismatches. Every
// extent carries a CRC32C (ISA-L's crc32_iscsi) recorded when it is written and checked when it
// is read, so a torn or corrupt extent is an error naming the extent, its offset and the file.
//
// I/O goes through liburing with O_DIRECT on a dedicated I/O thread: a transfer is cut into
// blocks of `block_bytes`, and a sliding window of at most `queue_depth` blocks stays in flight
// (a completion frees a slot that is refilled at once, DeepSpeed's "overlap" mode). The file is
// registered (fixed file), and so are the arena's buffers when it is pinned (read/write_fixed).
// Short reads and writes are resubmitted for the remainder; a read past the end of the file or
// an error completion fails the request with the errno text, naming the extent and the file.
// A file system that refuses O_DIRECT (FUSE, some network file systems) is an error at open
// that names the path and the file system type; so is a memory file system (tmpfs, ramfs), which
// accepts O_DIRECT since Linux 6.6 but would keep the offloaded bytes in RAM.
//
// Requests are asynchronous: Read/Write return a ticket at once; Wait(ticket) blocks until it is
// done and rethrows its error. Requests to one extent take effect in the order they were made.
// Buffers must be 4 KiB aligned and stay valid until the wait; they need hold only the extent's
// bytes (a last partial 4 KiB page goes through the engine's own bounce page).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "offload/pinned_arena.h"

namespace seqmesh {

struct SsdEngineOptions {
  std::string dir;  // where the scratch file lives (offload.nvme_path)
  // The defaults are the point of the sweep against fio nearest the best for both reads and
  // writes (docs/BENCHMARKS.md, "Offload: SSD engine vs fio"): 32 blocks of 1 MiB in flight.
  size_t block_bytes = 1u << 20;  // offload.block_size; a multiple of 4096
  int queue_depth = 32;           // offload.queue_depth; blocks in flight
  // Tests: each block is submitted with only part of its length, so every transfer comes back
  // short and is resubmitted for the remainder.
  bool inject_short_io = false;
  // false: skip O_TMPFILE and create the file with a name, unlinked at once (the path taken where
  // a file system refuses O_TMPFILE; tests use it to exercise that path).
  bool unnamed_file = true;
};

// What the engine did since it was created (or since ResetStats).
struct SsdEngineStats {
  uint64_t bytes_read = 0, bytes_written = 0;
  uint64_t reads = 0, writes = 0;    // requests (extents)
  uint64_t resubmits = 0;            // short transfers resubmitted
  double busy_seconds = 0;           // wall time with at least one block in flight
  double io_thread_cpu_seconds = 0;  // the I/O thread's user + system time
  // Wall time with at least one request admitted and not finished (its blocks, its checksums):
  // the I/O path's time, which busy_seconds undercounts by the checksum work between blocks.
  double active_seconds = 0;
  uint64_t fixed_buffer_blocks = 0;  // blocks sent as read/write_fixed (registered buffers)
};

class SsdEngine {
 public:
  using Ticket = uint64_t;

  // extent_bytes[i]: the size of extent i (rounded up to 4 KiB in the file). `arena` may be null
  // (buffers are then not registered); if given, it must outlive the engine.
  SsdEngine(const SsdEngineOptions& options, const std::vector<size_t>& extent_bytes,
            const PinnedArena* arena);
  ~SsdEngine();  // waits for the requests in flight, then closes (and so frees) the file
  SsdEngine(const SsdEngine&) = delete;
  SsdEngine& operator=(const SsdEngine&) = delete;

  // Writes `bytes` (<= the extent's size) from src to the extent; records its CRC32C.
  Ticket Write(int extent, const std::byte* src, size_t bytes);
  // Reads the extent's recorded bytes into dst and checks the CRC32C. Reading an extent never
  // written is an error.
  Ticket Read(int extent, std::byte* dst);
  // Blocks until the request is done; rethrows its error (naming the extent, its offset and the
  // file). A ticket is waited for once.
  void Wait(Ticket ticket);
  // Waits for every request not yet waited for and rethrows the first error among them.
  void WaitAll();

  int num_extents() const;
  size_t extent_bytes(int extent) const;  // the size given at construction
  uint64_t extent_offset(int extent) const;
  uint64_t file_bytes() const;
  // The directory and how the file was created ("unnamed file in /var/tmp (ext4)").
  const std::string& description() const;
  // Whether the arena's buffers are registered with the ring (blocks inside them go out as
  // read/write_fixed). A pinned arena the kernel refuses to register (RLIMIT_MEMLOCK, a buffer
  // over 1 GiB) is used unregistered, and description() says why.
  bool fixed_buffers() const;
  SsdEngineStats stats() const;
  void ResetStats();
  int fd_for_test() const;  // tests corrupt extents through it

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// CRC32C (Castagnoli) of data, continuing from `crc` (0 for a fresh checksum); the standard
// check value: Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(const void* data, size_t bytes, uint32_t crc = 0);

}  // namespace seqmesh
