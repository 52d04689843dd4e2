// Reader for the PyTorch fixtures written by tests/reference/make_fixtures.py (DESIGN.md
// section 5). The format (version 1, little-endian) is documented in
// tests/reference/fixtures/README.md:
//
//   "SMFX" | u32 version | u32 count | count x { u32 name_len | name | u32 dtype (0 f32, 1 i32)
//                                              | u32 ndim | i64 dims[ndim] | numel*4 data bytes }
//
// A Fixture owns the bytes of every entry; the Tensors it hands out are views into them and stay
// valid for the Fixture's lifetime (moving the Fixture keeps them valid; it cannot be copied).
// Every error is a seqmesh::Error naming the file and what is wrong.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/tensor.h"

namespace seqmesh::testing {

class Fixture {
 public:
  // Reads and validates the whole file: magic, version, dtypes, ndim <= kMaxDims, that every
  // entry is complete, that names are unique and that no bytes follow the last entry.
  static Fixture Load(const std::string& path);

  Fixture(Fixture&&) = default;
  Fixture& operator=(Fixture&&) = default;
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  const std::string& path() const { return path_; }
  bool Has(const std::string& name) const;
  // The entry as a Tensor (dtype kF32 or kI32) named `name`; throws if there is none.
  const Tensor& Get(const std::string& name) const;
  // A 0-dimensional f32 or i32 entry, as float.
  float Scalar(const std::string& name) const;
  // A 0-dimensional i32 entry, or an f32 one holding an integral value.
  int ScalarInt(const std::string& name) const;
  // Names starting with `prefix`, in file order.
  std::vector<std::string> Names(const std::string& prefix = "") const;

 private:
  struct Entry {
    std::vector<std::byte> bytes;  // numel * 4, owned; tensor points into it
    Tensor tensor;
  };
  Fixture() = default;
  const Tensor& GetScalar(const std::string& name) const;

  std::string path_;
  std::vector<Entry> entries_;  // file order
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace seqmesh::testing
