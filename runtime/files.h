// Files: a read-only memory map (move-only RAII), a file written in place and published
// atomically (move-only RAII), and atomic whole-file writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace seqmesh {

// A read-only memory map of a whole file (move-only; unmapped and closed on destruction).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// A file written at any offsets and published atomically (move-only): the bytes go to
// `path`.tmp; Commit fsyncs it, renames it over `path` and fsyncs the directory, so a crash leaves
// either the old file or the new one, never a mix. Destroyed uncommitted, the temporary is
// removed and `path` is untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  // Sets the file's size (bytes never written read as zeros).
  void Resize(uint64_t bytes);
  // Writes `bytes` bytes at `offset` (pwrite, retried until complete).
  void WriteAt(uint64_t offset, const void* data, size_t bytes);
  // Makes the file `path`, durably. Nothing may be written afterwards.
  void Commit();
  const std::string& path() const { return path_; }

 private:
  void Discard() noexcept;  // closes and removes the temporary
  std::string path_, tmp_;
  int fd_ = -1;
};

// Writes `path` atomically (AtomicFileWriter).
void WriteFileAtomically(const std::string& path, const void* data, size_t bytes);

}  // namespace seqmesh
