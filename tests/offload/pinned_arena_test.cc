// PinnedArena: exact sizes (4 KiB slots, never powers of two), alignment, what VmLck shows, and
// the errors a user sees (unknown pools, mlock refused by RLIMIT_MEMLOCK).
#include "offload/pinned_arena.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "runtime/check.h"

namespace seqmesh {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

std::vector<PinnedPool> OddPools() { return {{"mlp", 5000, 3}, {"embedding", kMiB + 1, 1}}; }

bool Aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kOffloadAlignment == 0; }

TEST(PinnedArena, IsTheExactSumOf4KiBSlots) {
  PinnedArena arena(OddPools(), /*pin=*/false);
  // 3 x 8 KiB + (1 MiB + 4 KiB): no power of two anywhere.
  EXPECT_EQ(arena.bytes(), 3 * 8192 + kMiB + 4096);
  EXPECT_EQ(arena.bytes(), 1077248u);
}

TEST(PinnedArena, BuffersAreAlignedDisjointAndInPoolOrder) {
  PinnedArena arena(OddPools(), /*pin=*/false);
  ASSERT_TRUE(Aligned(arena.data()));
  const std::vector<std::span<std::byte>> buffers = arena.all_buffers();
  ASSERT_EQ(buffers.size(), 4u);
  EXPECT_EQ(buffers[0].data(), arena.data());
  for (size_t i = 0; i < buffers.size(); ++i) {
    EXPECT_TRUE(Aligned(buffers[i].data())) << i;
    EXPECT_EQ(buffers[i].size(), i < 3 ? 5000u : kMiB + 1) << i;
    EXPECT_LE(buffers[i].data() + buffers[i].size(), arena.data() + arena.bytes()) << i;
    if (i > 0) {
      EXPECT_GE(buffers[i].data(), buffers[i - 1].data() + buffers[i - 1].size()) << i;
    }
  }
  EXPECT_EQ(arena.buffer("mlp", 2).data(), arena.data() + 2 * 8192);
  EXPECT_EQ(arena.buffer("embedding").data(), arena.data() + 3 * 8192);
  // Every byte is writable.
  for (const auto& buffer : buffers) std::fill(buffer.begin(), buffer.end(), std::byte{7});
}

TEST(PinnedArena, PinnedGrowsVmLckByExactlyItsBytes) {
  const size_t before = ReadProcessMemory().vm_lck;
  {
    PinnedArena arena(OddPools(), /*pin=*/true);
    ASSERT_TRUE(arena.pinned());
    const size_t grown = ReadProcessMemory().vm_lck - before;
    EXPECT_NEAR(static_cast<double>(grown), static_cast<double>(arena.bytes()), 4096.0);
  }
  EXPECT_EQ(ReadProcessMemory().vm_lck, before);
}

TEST(PinnedArena, UnpinnedIsResidentButNotLocked) {
  const ProcessMemory before = ReadProcessMemory();
  PinnedArena arena({{"staging", 8 * kMiB + 12345, 2}}, /*pin=*/false);
  const ProcessMemory after = ReadProcessMemory();
  EXPECT_FALSE(arena.pinned());
  EXPECT_EQ(after.vm_lck, before.vm_lck);
  // MAP_POPULATE: the pages are there from the start.
  EXPECT_GE(after.rss_anon + 64 * 4096, before.rss_anon + arena.bytes());
}

TEST(PinnedArena, UnknownPoolAndIndexAreErrorsNamingThePool) {
  PinnedArena arena(OddPools(), /*pin=*/false);
  try {
    arena.buffer("attention");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no pinned pool named 'attention'"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("mlp, embedding"), std::string::npos) << e.what();
  }
  try {
    arena.buffer("mlp", 3);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pool 'mlp' has 3 buffers; buffer 3"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(arena.buffer("mlp", -1), Error);
}

TEST(PinnedArena, BadPoolsAreRefused) {
  EXPECT_THROW(PinnedArena({{"a", 4096, 1}, {"a", 4096, 1}}, false), Error);
  EXPECT_THROW(PinnedArena({{"a", 0, 1}}, false), Error);
  EXPECT_THROW(PinnedArena({{"a", 4096, 0}}, false), Error);
  EXPECT_THROW(PinnedArena({{"", 4096, 1}}, false), Error);
}

TEST(PinnedArena, EmptyHasNoMemory) {
  PinnedArena arena;
  EXPECT_EQ(arena.bytes(), 0u);
  EXPECT_EQ(arena.data(), nullptr);
  EXPECT_TRUE(arena.all_buffers().empty());
  PinnedArena no_pools({}, /*pin=*/true);
  EXPECT_EQ(no_pools.bytes(), 0u);
}

TEST(PinnedArena, MoveHandsOverTheRegion) {
  const size_t before = ReadProcessMemory().vm_lck;
  PinnedArena a(OddPools(), /*pin=*/true);
  std::byte* data = a.data();
  PinnedArena b(std::move(a));
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.bytes(), 0u);
  PinnedArena c;
  c = std::move(b);
  EXPECT_EQ(c.data(), data);
  EXPECT_TRUE(c.pinned());
  EXPECT_EQ(c.buffer("mlp", 1).data(), data + 8192);
  c = PinnedArena();
  EXPECT_EQ(ReadProcessMemory().vm_lck, before);
}

// Without CAP_IPC_LOCK (dropped from the effective set; we may run as root) and with
// RLIMIT_MEMLOCK at 64 KiB, locking 1 MiB fails: the message names the limit and the way out.
void LockWithoutPrivilege() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2] = {};
  if (syscall(SYS_capget, &header, caps) != 0) _exit(2);
  caps[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
  if (syscall(SYS_capset, &header, caps) != 0) _exit(3);
  rlimit limit{};
  getrlimit(RLIMIT_MEMLOCK, &limit);
  limit.rlim_cur = 64 * 1024;
  if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) _exit(4);
  try {
    PinnedArena arena({{"optimizer", kMiB, 1}}, /*pin=*/true);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    _exit(0);
  }
  _exit(1);  // locked anyway
}

TEST(PinnedArenaDeathTest, LockFailureNamesTheLimitAndTheRemedies) {
  // A child process (fork) drops the privilege, so this process keeps its own.
  EXPECT_EXIT(LockWithoutPrivilege(), ::testing::ExitedWithCode(0),
              "cannot lock 1048576 bytes .*RLIMIT_MEMLOCK's soft limit is 65536 bytes.*"
              "ulimit -l.*limits.conf.*offload.pin_memory = false");
}

TEST(ProcessMemory, ReadsProcSelfStatusInBytes) {
  const ProcessMemory memory = ReadProcessMemory();
  EXPECT_GT(memory.vm_rss, 0u);
  EXPECT_GE(memory.vm_hwm, memory.vm_rss);
  EXPECT_EQ(memory.vm_rss % 1024, 0u);
}

}  // namespace
}  // namespace seqmesh
