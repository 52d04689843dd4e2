// Test helpers for offload/: a scratch directory of its own per test, and 4 KiB aligned buffers
// that are not in any arena.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "offload/pinned_arena.h"
#include "runtime/model.h"

namespace seqmesh::testing {

// A fresh directory under the build tree (SEQMESH_TEST_SCRATCH_ROOT), removed with its contents.
class ScratchDir {
 public:
  ScratchDir() {
    std::filesystem::create_directories(SEQMESH_TEST_SCRATCH_ROOT);
    std::string pattern = std::string(SEQMESH_TEST_SCRATCH_ROOT) + "/t-XXXXXX";
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    if (mkdtemp(name.data()) == nullptr) std::abort();
    path_ = name.data();
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  // The names in the directory (none, if the engine leaves nothing behind).
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path_))
      names.push_back(entry.path().filename().string());
    return names;
  }

 private:
  std::string path_;
};

// `bytes` rounded up to 4 KiB, 4 KiB aligned, from the heap.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t bytes)
      : bytes_(bytes),
        data_(static_cast<std::byte*>(std::aligned_alloc(kOffloadAlignment, AlignUp(bytes)))) {}
  std::byte* data() const { return data_.get(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  size_t bytes_;
  std::unique_ptr<std::byte, Free> data_;
};

inline void FillRandom(std::byte* data, size_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    const uint64_t word = rng();
    std::memcpy(data + i, &word, 8);
  }
  for (; i < bytes; ++i) data[i] = static_cast<std::byte>(rng());
}

// A packed micro-batch of `docs` equal documents, `t` tokens in all, with ids below `vocab`.
struct Docs {
  std::vector<int32_t> tokens, targets, cu;
  Docs(int64_t t, int docs, int salt, int vocab) {
    for (int d = 0; d <= docs; ++d) cu.push_back(static_cast<int32_t>(t * d / docs));
    for (int64_t i = 0; i < t; ++i) {
      tokens.push_back(static_cast<int32_t>((i * 7 + salt) % vocab));
      targets.push_back(static_cast<int32_t>((i * 11 + 3 * salt) % vocab));
    }
  }
  Batch View() const {
    return Batch{tokens.data(),
                 targets.data(),
                 cu.data(),
                 static_cast<int64_t>(cu.size()) - 1,
                 static_cast<int64_t>(tokens.size()),
                 nullptr};
  }
};

}  // namespace seqmesh::testing
