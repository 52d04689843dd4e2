// SsdEngine: bitwise round trips over block sizes, queue depths and buffer kinds; short
// transfers; the checksum catching a corrupt extent; the errors a user sees (tmpfs, a missing
// directory, an extent never written); and no file or disk space left behind, even after
// kill -9.
#include "offload/ssd_engine.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/check.h"
#include "tests/offload/offload_test_util.h"

namespace seqmesh {
namespace {

using testing::AlignedBuffer;
using testing::FillRandom;
using testing::ScratchDir;

constexpr size_t kKiB = 1024, kMiB = 1024 * 1024;

// The message of the Error that `body` throws ("" if none).
template <typename Body>
std::string ErrorOf(Body body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Crc32c, MatchesTheStandardCheckValues) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c("", 0), 0u);
  const std::vector<unsigned char> zeros(32, 0), ones(32, 0xff);
  EXPECT_EQ(Crc32c(zeros.data(), 32), 0x8A9136AAu);  // RFC 3720, B.4
  EXPECT_EQ(Crc32c(ones.data(), 32), 0x62A8AB43u);
  // Continuing from an earlier checksum equals one pass over the whole.
  EXPECT_EQ(Crc32c("6789", 4, Crc32c("12345", 5)), 0xE3069283u);
}

// Extent sizes of every kind: 1 byte, around a page, not multiples of 4096, several MiB.
std::vector<size_t> MixedSizes(uint64_t seed) {
  std::vector<size_t> sizes = {1,     4095, 4096,     4097,           5000,
                               12345, kMiB, kMiB + 1, 3 * kMiB + 777, 9 * kMiB - 5};
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 6; ++i) sizes.push_back(1 + rng() % (2 * kMiB));
  return sizes;
}

// The buffers a round trip writes from and reads into: in a pinned arena (registered with the
// ring) or from the heap (not registered).
class RoundTripBuffers {
 public:
  RoundTripBuffers(const std::vector<size_t>& sizes, bool in_arena) {
    std::vector<PinnedPool> pools;
    for (size_t i = 0; i < sizes.size(); ++i)
      pools.push_back({"e" + std::to_string(i), sizes[i], 2});
    if (in_arena) arena_ = PinnedArena(pools, /*pin=*/true);
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (in_arena) {
        src_.push_back(arena_.buffer(pools[i].name, 0).data());
        dst_.push_back(arena_.buffer(pools[i].name, 1).data());
      } else {
        heap_.emplace_back(sizes[i]);
        src_.push_back(heap_.back().data());
        heap_.emplace_back(sizes[i]);
        dst_.push_back(heap_.back().data());
      }
      FillRandom(src_[i], sizes[i], 1000 + i);
      std::memset(dst_[i], 0xAB, AlignUp(sizes[i]));
    }
  }
  const PinnedArena* arena() const { return arena_.bytes() > 0 ? &arena_ : nullptr; }
  std::byte* src(size_t i) const { return src_[i]; }
  std::byte* dst(size_t i) const { return dst_[i]; }

 private:
  PinnedArena arena_;
  std::vector<AlignedBuffer> heap_;
  std::vector<std::byte*> src_, dst_;
};

// Writes every extent and reads it back, all requests in flight at once, in shuffled orders;
// each extent's bytes must come back bitwise, and nothing past them may be touched.
void RoundTrip(SsdEngine& engine, const std::vector<size_t>& sizes,
               const std::vector<size_t>& written, const RoundTripBuffers& buffers, uint64_t seed) {
  std::vector<int> order(sizes.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  for (int e : order) engine.Write(e, buffers.src(e), written[e]);
  engine.WaitAll();
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<SsdEngine::Ticket> tickets;
  for (int e : order) tickets.push_back(engine.Read(e, buffers.dst(e)));
  for (size_t i = tickets.size(); i-- > 0;) engine.Wait(tickets[i]);  // out of order
  for (size_t e = 0; e < sizes.size(); ++e) {
    ASSERT_EQ(std::memcmp(buffers.src(e), buffers.dst(e), written[e]), 0) << "extent " << e;
    for (size_t b = written[e]; b < AlignUp(sizes[e]); ++b)
      ASSERT_EQ(buffers.dst(e)[b], std::byte{0xAB}) << "extent " << e << " byte " << b;
  }
}

using RoundTripParam = std::tuple<size_t, int, bool>;  // block bytes, queue depth, in arena

class SsdEngineRoundTrip : public ::testing::TestWithParam<RoundTripParam> {};

TEST_P(SsdEngineRoundTrip, ReturnsEveryExtentBitwise) {
  const auto [block_bytes, queue_depth, in_arena] = GetParam();
  ScratchDir dir;
  const std::vector<size_t> sizes = MixedSizes(block_bytes + queue_depth);
  // Some extents written only in part.
  std::vector<size_t> written = sizes;
  written[6] = 1000;
  written[8] = 2 * kMiB + 3;
  RoundTripBuffers buffers(sizes, in_arena);
  SsdEngine engine({.dir = dir.path(), .block_bytes = block_bytes, .queue_depth = queue_depth},
                   sizes, buffers.arena());
  EXPECT_EQ(engine.fixed_buffers(), in_arena) << engine.description();
  RoundTrip(engine, sizes, written, buffers, queue_depth);
  const SsdEngineStats stats = engine.stats();
  EXPECT_EQ(stats.writes, sizes.size());
  EXPECT_EQ(stats.reads, sizes.size());
  const size_t total = std::accumulate(written.begin(), written.end(), size_t{0});
  EXPECT_EQ(stats.bytes_written, total);
  EXPECT_EQ(stats.bytes_read, total);
  EXPECT_EQ(stats.fixed_buffer_blocks > 0, in_arena);
  EXPECT_GT(stats.busy_seconds, 0);
}

INSTANTIATE_TEST_SUITE_P(BlocksDepthsBuffers, SsdEngineRoundTrip,
                         ::testing::Combine(::testing::Values(4 * kKiB, 64 * kKiB, 1 * kMiB,
                                                              8 * kMiB),
                                            ::testing::Values(1, 8, 32), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<RoundTripParam>& info) {
                           return "block" + std::to_string(std::get<0>(info.param) / kKiB) +
                                  "k_qd" + std::to_string(std::get<1>(info.param)) +
                                  (std::get<2>(info.param) ? "_arena" : "_heap");
                         });

TEST(SsdEngine, ExtentTableIsExactAndTheFilePreallocated) {
  ScratchDir dir;
  const std::vector<size_t> sizes = {5000, 1, 4096, kMiB + 1};
  SsdEngine engine({.dir = dir.path()}, sizes, nullptr);
  ASSERT_EQ(engine.num_extents(), 4);
  const std::vector<uint64_t> offsets = {0, 8192, 12288, 16384};
  for (int e = 0; e < 4; ++e) {
    EXPECT_EQ(engine.extent_offset(e), offsets[e]);
    EXPECT_EQ(engine.extent_bytes(e), sizes[e]);
  }
  EXPECT_EQ(engine.file_bytes(), 16384 + kMiB + 4096);
  struct stat st {};
  ASSERT_EQ(fstat(engine.fd_for_test(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), engine.file_bytes());
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, engine.file_bytes());
  EXPECT_TRUE(Contains(engine.description(), "unnamed file in " + dir.path() + " (ext4)"))
      << engine.description();
}

TEST(SsdEngine, ManyRequestsInFlightAndOneExtentInOrder) {
  ScratchDir dir;
  std::vector<size_t> sizes(200);
  for (size_t i = 0; i < sizes.size(); ++i) sizes[i] = 64 * kKiB + i * 777;
  RoundTripBuffers buffers(sizes, /*in_arena=*/false);
  SsdEngine engine({.dir = dir.path(), .block_bytes = 16 * kKiB, .queue_depth = 8}, sizes, nullptr);
  RoundTrip(engine, sizes, sizes, buffers, 7);

  // Write A, read, write B, read, none waited for: the reads see A, then B.
  AlignedBuffer a(sizes[0]), b(sizes[0]), first(sizes[0]), second(sizes[0]);
  FillRandom(a.data(), sizes[0], 1);
  FillRandom(b.data(), sizes[0], 2);
  engine.Write(0, a.data(), sizes[0]);
  const SsdEngine::Ticket read_a = engine.Read(0, first.data());
  engine.Write(0, b.data(), sizes[0]);
  const SsdEngine::Ticket read_b = engine.Read(0, second.data());
  engine.Wait(read_b);
  engine.Wait(read_a);
  engine.WaitAll();
  EXPECT_EQ(std::memcmp(first.data(), a.data(), sizes[0]), 0);
  EXPECT_EQ(std::memcmp(second.data(), b.data(), sizes[0]), 0);
}

// A read queued behind the write of its extent, nothing else in flight: the write's finish must
// start the read (no completion would come to wake the I/O thread).
TEST(SsdEngine, AReadQueuedBehindTheWriteOfItsExtentStarts) {
  ScratchDir dir;
  SsdEngine engine({.dir = dir.path(), .queue_depth = 4}, {64 * kKiB}, nullptr);
  AlignedBuffer src(64 * kKiB), dst(64 * kKiB);
  for (int i = 0; i < 50; ++i) {
    FillRandom(src.data(), 64 * kKiB, i);
    const SsdEngine::Ticket write = engine.Write(0, src.data(), 64 * kKiB);
    engine.Wait(engine.Read(0, dst.data()));
    engine.Wait(write);
    ASSERT_EQ(std::memcmp(src.data(), dst.data(), 64 * kKiB), 0) << i;
  }
}

TEST(SsdEngine, ShortTransfersAreResubmittedForTheirRemainder) {
  ScratchDir dir;
  const std::vector<size_t> sizes = MixedSizes(3);
  RoundTripBuffers buffers(sizes, /*in_arena=*/true);
  SsdEngine engine(
      {.dir = dir.path(), .block_bytes = 1 * kMiB, .queue_depth = 8, .inject_short_io = true},
      sizes, buffers.arena());
  RoundTrip(engine, sizes, sizes, buffers, 3);
  EXPECT_GT(engine.stats().resubmits, 0u);
}

TEST(SsdEngine, CorruptExtentIsAnErrorNamingExtentAndFile) {
  ScratchDir dir;
  const std::vector<size_t> sizes = {10000, 20000, 30000};
  RoundTripBuffers buffers(sizes, /*in_arena=*/false);
  SsdEngine engine({.dir = dir.path()}, sizes, nullptr);
  for (int e = 0; e < 3; ++e) engine.Write(e, buffers.src(e), sizes[e]);
  engine.WaitAll();
  AlignedBuffer garbage(4096);
  FillRandom(garbage.data(), 4096, 99);
  ASSERT_EQ(pwrite(engine.fd_for_test(), garbage.data(), 4096,
                   static_cast<off_t>(engine.extent_offset(1))),
            4096);
  const std::string error = ErrorOf([&] { engine.Wait(engine.Read(1, buffers.dst(1))); });
  EXPECT_TRUE(Contains(error, "extent 1 (offset 12288, 20000 bytes)")) << error;
  EXPECT_TRUE(Contains(error, "corrupt: CRC32C stored 0x")) << error;
  EXPECT_TRUE(Contains(error, engine.description())) << error;
  // The others are intact.
  engine.Wait(engine.Read(0, buffers.dst(0)));
  engine.Wait(engine.Read(2, buffers.dst(2)));
  EXPECT_EQ(std::memcmp(buffers.src(2), buffers.dst(2), sizes[2]), 0);
}

// The file cut short behind the engine's back: the first block comes back short, the
// resubmitted remainder reads nothing, and the request fails naming where.
TEST(SsdEngine, ReadPastTheEndOfTheFileIsAnError) {
  ScratchDir dir;
  const std::vector<size_t> sizes = {4096, 3 * 4096};
  RoundTripBuffers buffers(sizes, /*in_arena=*/false);
  SsdEngine engine({.dir = dir.path()}, sizes, nullptr);
  engine.Wait(engine.Write(1, buffers.src(1), sizes[1]));
  ASSERT_EQ(ftruncate(engine.fd_for_test(), static_cast<off_t>(engine.extent_offset(1) + 4096)), 0);
  const std::string error = ErrorOf([&] { engine.Wait(engine.Read(1, buffers.dst(1))); });
  EXPECT_TRUE(Contains(error, "reading extent 1 (offset 4096, 12288 bytes) of unnamed file in"))
      << error;
  EXPECT_TRUE(Contains(error, "failed at file offset 8192: read past the end of the file"))
      << error;
  EXPECT_EQ(engine.stats().resubmits, 1u);
}

TEST(SsdEngine, ReadingAnExtentNeverWrittenIsAnError) {
  ScratchDir dir;
  SsdEngine engine({.dir = dir.path()}, {4096, 4096, 4096}, nullptr);
  AlignedBuffer dst(4096);
  const std::string error = ErrorOf([&] { engine.Wait(engine.Read(2, dst.data())); });
  EXPECT_TRUE(Contains(error, "reading extent 2 of unnamed file in " + dir.path())) << error;
  EXPECT_TRUE(Contains(error, "never written")) << error;
  // WaitAll rethrows it too.
  engine.Read(1, dst.data());
  EXPECT_TRUE(Contains(ErrorOf([&] { engine.WaitAll(); }), "extent 1")) << error;
}

TEST(SsdEngine, BadRequestsAreRefusedAtOnce) {
  ScratchDir dir;
  SsdEngine engine({.dir = dir.path()}, {5000}, nullptr);
  AlignedBuffer buffer(8192);
  EXPECT_TRUE(Contains(ErrorOf([&] { engine.Write(1, buffer.data(), 10); }),
                       "extent 1 does not exist (the engine has 1 extents"));
  EXPECT_TRUE(Contains(ErrorOf([&] { engine.Write(0, buffer.data(), 5001); }),
                       "writing 5001 bytes to extent 0, which holds 5000"));
  EXPECT_TRUE(Contains(ErrorOf([&] { engine.Read(0, buffer.data() + 512); }), "not 4 KiB aligned"));
  EXPECT_TRUE(Contains(ErrorOf([&] { engine.Wait(12345); }), "ticket 12345"));
  EXPECT_TRUE(
      Contains(ErrorOf([&] { SsdEngine({.dir = dir.path(), .block_bytes = 5000}, {1}, nullptr); }),
               "offload.block_size = 5000"));
  EXPECT_TRUE(
      Contains(ErrorOf([&] { SsdEngine({.dir = dir.path(), .queue_depth = 0}, {1}, nullptr); }),
               "offload.queue_depth = 0"));
}

TEST(SsdEngine, TmpfsIsRefusedNamingTheFileSystem) {
  struct statfs fs {};
  if (statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994)
    GTEST_SKIP() << "no tmpfs at /dev/shm";
  const std::string error = ErrorOf([] { SsdEngine({.dir = "/dev/shm"}, {4096}, nullptr); });
  EXPECT_TRUE(Contains(error, "offload: /dev/shm is on tmpfs")) << error;
  EXPECT_TRUE(Contains(error, "O_DIRECT")) << error;
  EXPECT_TRUE(Contains(error, "set offload.nvme_path to a directory on a local disk")) << error;
}

TEST(SsdEngine, MissingDirectoryIsNamed) {
  ScratchDir dir;
  const std::string missing = dir.path() + "/no-such-dir";
  const std::string error = ErrorOf([&] { SsdEngine({.dir = missing}, {4096}, nullptr); });
  EXPECT_TRUE(Contains(error, "offload.nvme_path " + missing + ": No such file or directory"))
      << error;
}

TEST(SsdEngine, TooLittleSpaceIsNamed) {
  ScratchDir dir;
  struct statvfs vfs {};
  ASSERT_EQ(statvfs(dir.path().c_str(), &vfs), 0);
  const size_t too_much = static_cast<size_t>(vfs.f_blocks) * vfs.f_frsize * 2;
  const std::string error = ErrorOf([&] { SsdEngine({.dir = dir.path()}, {too_much}, nullptr); });
  EXPECT_TRUE(Contains(error, "cannot reserve " + std::to_string(too_much) + " bytes")) << error;
  EXPECT_TRUE(Contains(error, dir.path() + " (ext4)")) << error;
  EXPECT_TRUE(Contains(error, "No space left on device") || Contains(error, "File too large"))
      << error;
  EXPECT_TRUE(dir.Entries().empty());
}

TEST(SsdEngine, StatsCountAndReset) {
  ScratchDir dir;
  const std::vector<size_t> sizes = {3 * kMiB, 4096};
  RoundTripBuffers buffers(sizes, /*in_arena=*/false);
  SsdEngine engine({.dir = dir.path(), .block_bytes = 256 * kKiB, .queue_depth = 4}, sizes,
                   nullptr);
  RoundTrip(engine, sizes, sizes, buffers, 1);
  SsdEngineStats stats = engine.stats();
  EXPECT_EQ(stats.bytes_written, 3 * kMiB + 4096);
  EXPECT_EQ(stats.writes, 2u);
  EXPECT_EQ(stats.resubmits, 0u);
  EXPECT_GT(stats.busy_seconds, 0);
  // Requests are active from admission to their checksum: at least while blocks are in flight.
  EXPECT_GE(stats.active_seconds, stats.busy_seconds);
  EXPECT_GT(stats.io_thread_cpu_seconds, 0);
  engine.ResetStats();
  stats = engine.stats();
  EXPECT_EQ(stats.bytes_written, 0u);
  EXPECT_EQ(stats.reads, 0u);
  EXPECT_LT(stats.busy_seconds, 0.001);
  EXPECT_LT(stats.active_seconds, 0.001);
  EXPECT_LT(stats.io_thread_cpu_seconds, 0.001);
}

TEST(SsdEngine, PinnedArenaBuffersAreRegisteredAndUnpinnedOnesNot) {
  ScratchDir dir;
  PinnedArena unpinned({{"a", kMiB, 1}}, /*pin=*/false);
  SsdEngine plain({.dir = dir.path()}, {kMiB}, &unpinned);
  EXPECT_FALSE(plain.fixed_buffers());
  plain.Wait(plain.Write(0, unpinned.buffer("a").data(), kMiB));
  EXPECT_EQ(plain.stats().fixed_buffer_blocks, 0u);

  PinnedArena pinned({{"a", kMiB, 1}}, /*pin=*/true);
  SsdEngine fixed({.dir = dir.path()}, {kMiB}, &pinned);
  EXPECT_TRUE(fixed.fixed_buffers());
  // A buffer outside the arena still works, as a plain transfer.
  AlignedBuffer heap(kMiB);
  FillRandom(heap.data(), kMiB, 3);
  fixed.Wait(fixed.Write(0, heap.data(), kMiB));
  EXPECT_EQ(fixed.stats().fixed_buffer_blocks, 0u);
  fixed.Wait(fixed.Read(0, pinned.buffer("a").data()));
  EXPECT_EQ(fixed.stats().fixed_buffer_blocks, 1u);
  EXPECT_EQ(std::memcmp(heap.data(), pinned.buffer("a").data(), kMiB), 0);
}

}  // namespace
}  // namespace seqmesh
