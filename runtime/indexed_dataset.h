// Megatron-LM's indexed dataset (`prefix.bin` + `prefix.idx`), byte-exact with Megatron's
// megatron/core/datasets/indexed_dataset.py.
//
// .idx, little-endian:
//   9 bytes magic "MMIDIDX\0\0" | u64 version = 1 | u8 dtype code | u64 sequence count S |
//   u64 document count D (documents + 1) | i32 lengths[S] | i64 byte pointers[S] into .bin |
//   i64 document indices[D] (0, then the sequence index ending each document, last = S)
// .bin: the tokens of every sequence, concatenated, in the dtype.
// dtype codes: 1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f64, 7 f32, 8 u16 (tokens: integer codes).
//
// The reader maps both files read-only and validates every field before use; each error names
// the file and the field. Sequences are read zero-copy in the file's dtype and widened to i32.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/files.h"

namespace seqmesh {

enum class TokenDType : uint8_t {
  kU8 = 1,
  kI8 = 2,
  kI16 = 3,
  kI32 = 4,
  kI64 = 5,
  kF64 = 6,
  kF32 = 7,
  kU16 = 8
};
size_t TokenDTypeSize(TokenDType t);

class IndexedDataset {
 public:
  // Opens prefix.idx and prefix.bin; throws seqmesh::Error naming the file and field at fault.
  static IndexedDataset Open(const std::string& prefix);

  TokenDType dtype() const { return dtype_; }
  int64_t num_sequences() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t num_documents() const { return static_cast<int64_t>(doc_index_.size()) - 1; }
  int64_t num_tokens() const { return num_tokens_; }
  const std::vector<int32_t>& lengths() const { return lengths_; }
  const std::vector<int64_t>& document_index() const { return doc_index_; }
  int32_t Length(int64_t sequence) const;
  // Appends the tokens of `sequence` to `out`, widened to i32 (values outside i32 are an error).
  void Read(int64_t sequence, std::vector<int32_t>& out) const;
  // Tokens [begin, begin + count) of `sequence` only (a piece of a cut sequence).
  void ReadRange(int64_t sequence, int64_t begin, int64_t count, std::vector<int32_t>& out) const;
  int64_t Pointer(int64_t sequence) const;  // byte offset of the sequence in .bin

 private:
  IndexedDataset(MappedFile idx, MappedFile bin) : idx_(std::move(idx)), bin_(std::move(bin)) {}
  MappedFile idx_, bin_;
  TokenDType dtype_ = TokenDType::kU16;
  // Copied out of the map: the .idx arrays start at odd offsets (34), so they are not aligned for
  // direct access. Pointers are read on demand.
  std::vector<int32_t> lengths_;
  std::vector<int64_t> doc_index_;
  size_t pointers_offset_ = 0;
  int64_t num_tokens_ = 0;
};

// Writes prefix.bin and prefix.idx: each Add() is one sequence and one document (Megatron's
// usual layout). Finish() writes both files under temporary names, fsyncs and renames them into
// place, so a reader never sees a half-written dataset.
class IndexedDatasetWriter {
 public:
  IndexedDatasetWriter(std::string prefix, TokenDType dtype);
  void Add(std::span<const int32_t> tokens);
  void Finish();

 private:
  std::string prefix_;
  TokenDType dtype_;
  std::vector<uint8_t> bin_;
  std::vector<int32_t> lengths_;
  bool finished_ = false;
};

}  // namespace seqmesh
