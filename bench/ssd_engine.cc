// SsdEngine throughput at one point (block size, queue depth): the file of --size-mib cut into
// extents of --extent-mib, every extent's request in flight at once, from and into a pinned
// arena (registered buffers, read/write_fixed). One untimed write pass first, so the timed passes
// meet written (not merely preallocated) extents as fio does on its laid-out file; that first
// pass is printed too, as write-fresh. Prints one line per pass, for bench/ssd_vs_fio.sh, and
// the speed of CRC32C alone over the same bytes (the I/O thread computes it for every extent):
//
//   engine <pass> bs_kib=<b> qd=<q> gibps=<GiB/s> io_thread_cpu=<fraction of a core>
//   crc32c gibps=<GiB/s of CPU time>
//
//   ssd_engine --dir /var/tmp/seqmesh-bench [--size-mib 1024] [--extent-mib 64]
//              [--block-kib 1024] [--qd 32]   (block and depth default to SsdEngineOptions')
#include "offload/ssd_engine.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "offload/pinned_arena.h"
#include "runtime/check.h"

namespace {

using seqmesh::PinnedArena;
using seqmesh::SsdEngine;

struct BenchOptions {
  std::string dir;
  size_t size_mib = 1024, extent_mib = 64;
  size_t block_kib = seqmesh::SsdEngineOptions{}.block_bytes >> 10;  // the engine's defaults
  int queue_depth = seqmesh::SsdEngineOptions{}.queue_depth;
};

BenchOptions ParseFlags(int argc, char** argv) {
  BenchOptions o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--dir")
      o.dir = value;
    else if (flag == "--size-mib")
      o.size_mib = std::stoul(value);
    else if (flag == "--extent-mib")
      o.extent_mib = std::stoul(value);
    else if (flag == "--block-kib")
      o.block_kib = std::stoul(value);
    else if (flag == "--qd")
      o.queue_depth = std::stoi(value);
    else
      SM_CHECK(false) << "ssd_engine: unknown flag " << flag;
  }
  SM_CHECK(!o.dir.empty()) << "ssd_engine: --dir is required (a directory on a disk)";
  SM_CHECK(o.extent_mib > 0 && o.size_mib % o.extent_mib == 0)
      << "ssd_engine: --size-mib must be a multiple of --extent-mib";
  return o;
}

// One pass over every extent; prints its line.
void Pass(SsdEngine& engine, const PinnedArena& arena, bool write, const char* name,
          const BenchOptions& o) {
  engine.ResetStats();
  const auto start = std::chrono::steady_clock::now();
  for (int e = 0; e < engine.num_extents(); ++e) {
    std::byte* buffer = arena.buffer("extents", e).data();
    if (write) {
      engine.Write(e, buffer, engine.extent_bytes(e));
    } else {
      engine.Read(e, buffer);
    }
  }
  engine.WaitAll();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double gib = static_cast<double>(engine.file_bytes()) / (1 << 30);
  std::printf("engine %s bs_kib=%zu qd=%d gibps=%.4f io_thread_cpu=%.4f\n", name, o.block_kib,
              o.queue_depth, gib / seconds, engine.stats().io_thread_cpu_seconds / seconds);
  std::fflush(stdout);
}

// Random bytes, as fio writes (it scrambles its buffers): a host that compresses or dedupes
// what the VM writes must not favour one side.
void FillRandom(const PinnedArena& arena) {
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto* words = reinterpret_cast<uint64_t*>(arena.data());
  for (size_t i = 0; i < arena.bytes() / sizeof(uint64_t); ++i) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);  // splitmix64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    words[i] = z ^ (z >> 31);
  }
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU time, not wall time: other processes may share the cores.
void CrcSpeed(const PinnedArena& arena) {
  const double start = ThreadCpuSeconds();
  const uint32_t crc = seqmesh::Crc32c(arena.data(), arena.bytes());
  const double seconds = ThreadCpuSeconds() - start;
  std::printf("crc32c gibps=%.4f (crc 0x%08x)\n",
              static_cast<double>(arena.bytes()) / (1 << 30) / seconds, crc);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const BenchOptions o = ParseFlags(argc, argv);
    const int extents = static_cast<int>(o.size_mib / o.extent_mib);
    const size_t extent_bytes = o.extent_mib << 20;
    PinnedArena arena({{"extents", extent_bytes, extents}}, /*pin=*/true);
    FillRandom(arena);
    SsdEngine engine({.dir = o.dir, .block_bytes = o.block_kib << 10, .queue_depth = o.queue_depth},
                     std::vector<size_t>(extents, extent_bytes), &arena);
    SM_CHECK(engine.fixed_buffers())
        << "ssd_engine: the arena was not registered: " << engine.description();
    Pass(engine, arena, /*write=*/true, "write-fresh", o);
    Pass(engine, arena, /*write=*/true, "write", o);
    Pass(engine, arena, /*write=*/false, "read", o);
    CrcSpeed(arena);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
