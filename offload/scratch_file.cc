#include "offload/scratch_file.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "runtime/check.h"

namespace seqmesh {
namespace {

constexpr const char* kUseADisk =
    "set offload.nvme_path to a directory on a local disk file system (ext4, xfs)";

struct KnownFileSystem {
  long magic;
  const char* name;
};
constexpr KnownFileSystem kFileSystems[] = {
    {TMPFS_MAGIC, "tmpfs"},
    {RAMFS_MAGIC, "ramfs"},
    {NFS_SUPER_MAGIC, "nfs"},
    {FUSE_SUPER_MAGIC, "fuse"},
    {OVERLAYFS_SUPER_MAGIC, "overlayfs"},
    {EXT4_SUPER_MAGIC, "ext4"},  // ext2 and ext3 share the magic
    {XFS_SUPER_MAGIC, "xfs"},
    {static_cast<long>(BTRFS_SUPER_MAGIC), "btrfs"},
};

std::string ErrnoText(int error) { return std::strerror(error); }

void CheckDirectory(const std::string& dir) {
  struct stat st {};
  SM_CHECK(!dir.empty()) << "offload: offload.nvme_path is empty; " << kUseADisk;
  SM_CHECK(stat(dir.c_str(), &st) == 0) << "offload: offload.nvme_path " << dir << ": "
                                        << ErrnoText(errno) << "; it must be an existing directory";
  SM_CHECK(S_ISDIR(st.st_mode)) << "offload: offload.nvme_path " << dir << " is not a directory";
}

// Memory file systems accept O_DIRECT on recent kernels (tmpfs since Linux 6.6), but offloaded
// bytes there stay in RAM, which is what offloading exists to free.
void RefuseMemoryFileSystem(const std::string& dir, const std::string& fs) {
  SM_CHECK(fs != "tmpfs" && fs != "ramfs")
      << "offload: " << dir << " is on " << fs
      << ", which is memory, not a disk (and refuses O_DIRECT before Linux 6.6); " << kUseADisk;
}

// O_TMPFILE; -1 where the file system or kernel does not offer it.
int OpenUnnamed(const std::string& dir) {
  const int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  const int error = errno;
  SM_CHECK(error == EOPNOTSUPP || error == EISDIR || error == EINVAL || error == ENOENT)
      << "offload: cannot create a scratch file in " << dir << ": " << ErrnoText(error);
  return -1;
}

int OpenNamed(const std::string& dir, std::string* path) {
  std::string name = dir + "/seqmesh-scratch-" + std::to_string(getpid()) + "-XXXXXX";
  std::vector<char> buffer(name.begin(), name.end());
  buffer.push_back('\0');
  const int fd = mkostemp(buffer.data(), O_CLOEXEC);
  SM_CHECK(fd >= 0) << "offload: cannot create a scratch file in " << dir << ": "
                    << ErrnoText(errno);
  *path = buffer.data();
  if (unlink(path->c_str()) != 0) {
    const int error = errno;
    close(fd);
    SM_CHECK(false) << "offload: cannot unlink the scratch file " << *path << ": "
                    << ErrnoText(error);
  }
  return fd;
}

// fcntl reports a file system without direct I/O as EINVAL, as open(O_DIRECT) would; switching
// after creation means a refused O_DIRECT never leaves a named file behind.
void EnableDirectIo(int fd, const std::string& dir, const std::string& fs) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags >= 0 && fcntl(fd, F_SETFL, flags | O_DIRECT) == 0) return;
  const int error = errno;
  SM_CHECK(error != EINVAL) << "offload: " << dir << " is on " << fs << ", which refuses O_DIRECT; "
                            << kUseADisk;
  SM_CHECK(false) << "offload: cannot switch the scratch file in " << dir
                  << " to O_DIRECT: " << ErrnoText(error);
}

// Returns a note for the description when the file system cannot preallocate.
std::string Preallocate(int fd, uint64_t bytes, const std::string& where) {
  if (fallocate(fd, 0, 0, static_cast<off_t>(bytes)) == 0) return "";
  const int error = errno;
  if (error == EOPNOTSUPP && ftruncate(fd, static_cast<off_t>(bytes)) == 0)
    return ", not preallocated: fallocate unsupported";
  SM_CHECK(error != ENOSPC && error != EDQUOT)
      << "offload: cannot reserve " << bytes << " bytes (" << bytes / double(1 << 30)
      << " GiB) for the scratch file in " << where << ": " << ErrnoText(error)
      << "; free space there or set offload.nvme_path to a larger disk";
  SM_CHECK(false) << "offload: cannot reserve " << bytes << " bytes for the scratch file in "
                  << where << ": " << ErrnoText(error);
  return "";
}

}  // namespace

std::string FileSystemName(const std::string& path) {
  struct statfs fs {};
  if (statfs(path.c_str(), &fs) != 0) return "unknown";
  for (const KnownFileSystem& known : kFileSystems)
    if (static_cast<long>(fs.f_type) == known.magic) return known.name;
  char hex[32];
  std::snprintf(hex, sizeof(hex), "0x%lx", static_cast<unsigned long>(fs.f_type));
  return hex;
}

ScratchFile::ScratchFile(const std::string& dir, uint64_t bytes, bool unnamed) : bytes_(bytes) {
  CheckDirectory(dir);
  const std::string fs = FileSystemName(dir);
  RefuseMemoryFileSystem(dir, fs);
  const std::string where = dir + " (" + fs + ")";
  fd_ = unnamed ? OpenUnnamed(dir) : -1;
  if (fd_ >= 0) {
    description_ = "unnamed file in " + where;
  } else {
    std::string path;
    fd_ = OpenNamed(dir, &path);
    description_ = "file " + path + " (unlinked) in " + where;
  }
  try {
    EnableDirectIo(fd_, dir, fs);
    description_ += Preallocate(fd_, bytes, where);
  } catch (...) {
    Close();
    throw;
  }
}

ScratchFile::~ScratchFile() { Close(); }

ScratchFile::ScratchFile(ScratchFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      bytes_(std::exchange(other.bytes_, 0)),
      description_(std::move(other.description_)) {}

ScratchFile& ScratchFile::operator=(ScratchFile&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = std::exchange(other.fd_, -1);
    bytes_ = std::exchange(other.bytes_, 0);
    description_ = std::move(other.description_);
  }
  return *this;
}

void ScratchFile::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

}  // namespace seqmesh
