// Hugging Face safetensors: 8-byte little-endian header size N, N bytes of JSON
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, padded with
// spaces to 8-byte alignment), then the byte buffer the offsets point into.
//
// The reader maps the file and validates it the way the reference library does: header size
// within the file and at most 100 MB, a JSON object, known dtypes, non-negative shapes, offsets
// matching shape x dtype size, regions in order without gaps or overlaps, covering the buffer.
// Errors name the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/files.h"
#include "runtime/tensor.h"

namespace seqmesh {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "F32", "BF16", ...
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t bytes = 0;
};

class SafetensorsFile {
 public:
  static SafetensorsFile Open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* Find(const std::string& name) const;

  // Copies tensor `name` into `dst` (f32), converting from F32, BF16 or F16. The shapes must be
  // equal; errors name the tensor and both shapes.
  void ReadInto(const std::string& name, const Tensor& dst) const;

 private:
  explicit SafetensorsFile(MappedFile file) : file_(std::move(file)) {}
  MappedFile file_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes f32 tensors (as F32, or rounded to BF16) under their names, atomically, with
// {"format": "pt"} plus `metadata` in "__metadata__".
void WriteSafetensors(const std::string& path, const std::vector<Tensor>& tensors,
                      bool as_bf16 = false,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace seqmesh
