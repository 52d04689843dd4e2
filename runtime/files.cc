#include "runtime/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "runtime/check.h"

namespace seqmesh {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SM_CHECK(fd >= 0) << "cannot open '" << path << "': " << std::strerror(errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    SM_CHECK(false) << "cannot stat '" << path << "': " << std::strerror(err);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    SM_CHECK(p != MAP_FAILED) << "cannot map '" << path << "': " << std::strerror(err);
    data_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)), data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path), tmp_(path + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SM_CHECK(fd_ >= 0) << "cannot create '" << tmp_ << "': " << std::strerror(errno);
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& o) noexcept
    : path_(std::move(o.path_)), tmp_(std::move(o.tmp_)), fd_(o.fd_) {
  o.fd_ = -1;
}

AtomicFileWriter& AtomicFileWriter::operator=(AtomicFileWriter&& o) noexcept {
  if (this != &o) {
    Discard();
    path_ = std::move(o.path_);
    tmp_ = std::move(o.tmp_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

AtomicFileWriter::~AtomicFileWriter() { Discard(); }

void AtomicFileWriter::Discard() noexcept {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
  fd_ = -1;
}

void AtomicFileWriter::Resize(uint64_t bytes) {
  SM_CHECK(fd_ >= 0) << "'" << path_ << "' is already committed";
  SM_CHECK(::ftruncate(fd_, static_cast<off_t>(bytes)) == 0)
      << "sizing '" << tmp_ << "' to " << bytes << " bytes failed: " << std::strerror(errno);
}

void AtomicFileWriter::WriteAt(uint64_t offset, const void* data, size_t bytes) {
  SM_CHECK(fd_ >= 0) << "'" << path_ << "' is already committed";
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd_, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    SM_CHECK(n > 0) << "writing '" << tmp_
                    << "' failed: " << (n < 0 ? std::strerror(errno) : "no progress");
    p += n;
    offset += static_cast<uint64_t>(n);
    bytes -= static_cast<size_t>(n);
  }
}

void AtomicFileWriter::Commit() {
  SM_CHECK(fd_ >= 0) << "'" << path_ << "' is already committed";
  const bool synced = ::fsync(fd_) == 0;
  const int sync_err = errno;
  const int fd = fd_;
  fd_ = -1;
  ::close(fd);
  if (!synced) ::unlink(tmp_.c_str());
  SM_CHECK(synced) << "fsync of '" << tmp_ << "' failed: " << std::strerror(sync_err);
  SM_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0)
      << "renaming '" << tmp_ << "' to '" << path_ << "' failed: " << std::strerror(errno);
  // The rename itself is durable only once the directory is synced.
  const size_t slash = path_.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash + 1);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void WriteFileAtomically(const std::string& path, const void* data, size_t bytes) {
  AtomicFileWriter file(path);
  file.WriteAt(0, data, bytes);
  file.Commit();
}

}  // namespace seqmesh
