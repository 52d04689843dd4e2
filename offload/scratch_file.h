// ScratchFile: the SSD engine's one file (move-only RAII; closing it frees its blocks).
//
// Created without a name (O_TMPFILE) in the directory, so that nothing is left behind after exit
// or kill -9; where the file system refuses O_TMPFILE, created as
// `seqmesh-scratch-<pid>-XXXXXX` and unlinked at once (a kill between the two calls is the only
// way a file can stay). Then switched to O_DIRECT and preallocated (fallocate) to its size.
//
// Refused, each with one line naming the directory and what to do: a missing directory, a
// memory file system (tmpfs, ramfs: offloaded bytes would stay in RAM; older kernels' tmpfs also
// refuses O_DIRECT), a file system that refuses O_DIRECT (FUSE, some network file systems), and
// too little space for the preallocation.
#pragma once

#include <cstdint>
#include <string>

namespace seqmesh {

class ScratchFile {
 public:
  // `unnamed` false skips O_TMPFILE and takes the named-and-unlinked path (tests use it).
  ScratchFile(const std::string& dir, uint64_t bytes, bool unnamed = true);
  ~ScratchFile();
  ScratchFile(ScratchFile&& other) noexcept;
  ScratchFile& operator=(ScratchFile&& other) noexcept;
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  int fd() const { return fd_; }
  uint64_t bytes() const { return bytes_; }
  // "unnamed file in /var/tmp (ext4)" or "file /x/seqmesh-scratch-12-a1B2c3 (unlinked) in /x (xfs)"
  const std::string& description() const { return description_; }

 private:
  void Close();
  int fd_ = -1;
  uint64_t bytes_ = 0;
  std::string description_;
};

// The file system holding `path` by name ("ext4", "xfs", "tmpfs", ...), else its statfs magic
// in hex ("0x58465342"); "unknown" when statfs fails.
std::string FileSystemName(const std::string& path);

}  // namespace seqmesh
