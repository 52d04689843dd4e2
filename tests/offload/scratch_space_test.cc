// The SSD engine's scratch file takes its space up front and gives all of it back: on a normal
// exit and on kill -9, with the file named or unnamed.
//
// Two measures, each immune to what else runs:
// - the space taken is the scratch file's own blocks (fstat through /proc/<pid>/fd), not the file
//   system's free space, which other tests move by gigabytes while they write and delete;
// - the space given back can only be seen in the file system's free space, so this program runs
//   alone (RUN_SERIAL in CMakeLists.txt) and allows a little slack for the rest of the machine.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "offload/ssd_engine.h"
#include "tests/offload/offload_test_util.h"

namespace seqmesh {
namespace {

using testing::AlignedBuffer;
using testing::FillRandom;
using testing::ScratchDir;

constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kBigFile = size_t{1} << 30;
constexpr double kSlackGiB = 0.25;  // the rest of the machine shares the disk

// Free GiB of the file system holding `dir`, after its journal has committed.
double FreeGiB(const std::string& dir) {
  sync();
  struct statvfs vfs {};
  statvfs(dir.c_str(), &vfs);
  return static_cast<double>(vfs.f_bavail) * vfs.f_frsize / (1 << 30);
}

// Polls (the kernel frees a file's blocks after its last descriptor closes, which for a ring's
// registered file is after the ring's own teardown) until at least `free` GiB are free.
bool WaitForFree(const std::string& dir, double free) {
  for (int i = 0; i < 100; ++i) {
    if (FreeGiB(dir) >= free) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

struct OpenScratch {
  int count = 0;          // descriptors of `pid` open on files in the directory
  size_t bytes = 0;       // the blocks those files hold on disk
  nlink_t max_links = 0;  // 0: every one is unlinked
};

// The files under `dir` that process `pid` holds open (the scratch file, named or not, shows in
// /proc/<pid>/fd as a link into `dir`, marked "(deleted)").
OpenScratch ScratchOpenBy(pid_t pid, const std::string& dir) {
  OpenScratch open;
  const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
  DIR* listing = opendir(fds.c_str());
  if (listing == nullptr) return open;
  while (dirent* entry = readdir(listing)) {
    const std::string link = fds + "/" + entry->d_name;
    char target[4096];
    const ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (std::strncmp(target, dir.c_str(), dir.size()) != 0 || target[dir.size()] != '/') continue;
    struct stat st {};
    if (stat(link.c_str(), &st) != 0) continue;  // follows the link to the open file itself
    ++open.count;
    open.bytes += static_cast<size_t>(st.st_blocks) * 512;
    open.max_links = std::max(open.max_links, st.st_nlink);
  }
  closedir(listing);
  return open;
}

TEST(ScratchSpace, NothingIsLeftBehindAndTheSpaceComesBack) {
  for (bool unnamed : {true, false}) {
    ScratchDir dir;
    const double before = FreeGiB(dir.path());
    {
      SsdEngine engine({.dir = dir.path(), .unnamed_file = unnamed}, {kBigFile}, nullptr);
      EXPECT_NE(engine.description().find(unnamed ? "unnamed file" : "seqmesh-scratch-"),
                std::string::npos)
          << engine.description();
      EXPECT_TRUE(dir.Entries().empty()) << dir.Entries()[0];
      const OpenScratch open = ScratchOpenBy(getpid(), dir.path());
      EXPECT_EQ(open.count, 1);
      EXPECT_GE(open.bytes, kBigFile);  // preallocated, before any write
      EXPECT_EQ(open.max_links, 0u);    // no name to leave behind
      AlignedBuffer buffer(kMiB);
      FillRandom(buffer.data(), kMiB, 5);
      engine.Wait(engine.Write(0, buffer.data(), kMiB));
    }
    EXPECT_TRUE(dir.Entries().empty());
    EXPECT_EQ(ScratchOpenBy(getpid(), dir.path()).count, 0);
    EXPECT_TRUE(WaitForFree(dir.path(), before - kSlackGiB)) << (unnamed ? "unnamed" : "named");
  }
}

TEST(ScratchSpace, KillDashNineLeavesNothingBehind) {
  ScratchDir dir;
  const double before = FreeGiB(dir.path());
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // an engine with a write in flight when the signal comes
    try {
      SsdEngine engine({.dir = dir.path(), .queue_depth = 32}, {kBigFile}, nullptr);
      AlignedBuffer buffer(kBigFile);
      std::memset(buffer.data(), 1, kBigFile);
      engine.Write(0, buffer.data(), kBigFile);
      const char byte = 1;
      if (write(ready[1], &byte, 1) != 1) _exit(2);
      engine.WaitAll();
      pause();
    } catch (...) {
      _exit(1);
    }
    _exit(0);
  }
  close(ready[1]);
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1) << "the child failed to start its engine";
  close(ready[0]);
  const OpenScratch open = ScratchOpenBy(child, dir.path());
  EXPECT_EQ(open.count, 1);
  EXPECT_GE(open.bytes, kBigFile);
  EXPECT_EQ(open.max_links, 0u);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(dir.Entries().empty());
  EXPECT_TRUE(WaitForFree(dir.path(), before - kSlackGiB));
}

}  // namespace
}  // namespace seqmesh
