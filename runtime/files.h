// Files: a read-only memory map (move-only RAII) and atomic whole-file writes.
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

// Writes `path` atomically: a temporary file beside it, fsync, rename over `path`, fsync of the
// directory. A crash leaves either the old file or the new one, never a mix.
void WriteFileAtomically(const std::string& path, const void* data, size_t bytes);

}  // namespace seqmesh
