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
#include "runtime/parameter_store.h"
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

// A tensor as a header declares it: what SafetensorsWriter lays out.
struct SafetensorsTensorSpec {
  std::string name;
  std::string dtype;  // "F32", "BF16", ...
  std::vector<int64_t> shape;
};

// Writes a safetensors file a region at a time, in any order, so that its tensors never have to
// be in memory together (an optimizer part whose moments are offloaded: launch/dist_checkpoint.cc).
//
// Protocol: the constructor lays out the header as WriteSafetensors does ("__metadata__" first,
// {"format": "pt"} plus `metadata`, then the tensors in the given order with their regions in
// that order), writes it and sizes the file; Write puts bytes of one tensor at their place;
// Commit checks that every byte of every tensor was written (a missed piece would otherwise be
// stored as zeros) and publishes the file as AtomicFileWriter does. Destroyed uncommitted, it
// leaves nothing at `path`.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, std::vector<SafetensorsTensorSpec> tensors,
                    const std::map<std::string, std::string>& metadata = {});

  const std::string& path() const { return file_.path(); }
  uint64_t tensor_bytes(size_t i) const { return begin_.at(i + 1) - begin_.at(i); }

  // Writes `bytes` bytes at byte `offset` of tensor i's region; a range past the region's end
  // is an error naming the tensor. Bytes written twice keep the later ones.
  void Write(size_t i, uint64_t offset, const void* data, size_t bytes);
  // Errors name the first tensor with bytes never written, and those bytes.
  void Commit();

 private:
  AtomicFileWriter file_;
  std::vector<SafetensorsTensorSpec> tensors_;
  uint64_t buffer_start_ = 0;    // in the file: 8 + the padded header
  std::vector<uint64_t> begin_;  // tensor i's region is [begin_[i], begin_[i + 1]) of the buffer
  // Per tensor, the byte ranges written so far: disjoint, merged, begin -> end.
  std::vector<std::map<uint64_t, uint64_t>> written_;
};

// Writes f32 tensors (as F32, or rounded to BF16) under their names, atomically, with
// {"format": "pt"} plus `metadata` in "__metadata__" (a SafetensorsWriter, one tensor at a time).
void WriteSafetensors(const std::string& path, const std::vector<Tensor>& tensors,
                      bool as_bf16 = false,
                      const std::map<std::string, std::string>& metadata = {});
// The same with a dtype per tensor: "F32", or "BF16" / "F16" rounded to nearest even.
// `access`: tensor i's bytes are read between access.before(i, false) and access.after(i,
// false) (a parameter store that keeps the weights off the device; runtime/parameter_store.h).
void WriteSafetensors(const std::string& path, const std::vector<Tensor>& tensors,
                      const std::vector<std::string>& dtypes,
                      const std::map<std::string, std::string>& metadata = {},
                      const ParamAccess& access = {});

// IEEE half <-> f32: round to nearest even (overflow to infinity, NaN stays NaN); exact widening.
uint16_t FloatToF16(float f);
float F16ToFloat(uint16_t h);

}  // namespace seqmesh
