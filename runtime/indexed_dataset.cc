#include "runtime/indexed_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "runtime/check.h"

namespace seqmesh {
namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr uint64_t kVersion = 1;
constexpr size_t kHeaderBytes = 9 + 8 + 1 + 8 + 8;  // 34

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

const char* DTypeName(TokenDType t) {
  switch (t) {
    case TokenDType::kU8:
      return "uint8";
    case TokenDType::kI8:
      return "int8";
    case TokenDType::kI16:
      return "int16";
    case TokenDType::kI32:
      return "int32";
    case TokenDType::kI64:
      return "int64";
    case TokenDType::kF64:
      return "float64";
    case TokenDType::kF32:
      return "float32";
    case TokenDType::kU16:
      return "uint16";
  }
  return "?";
}

}  // namespace

size_t TokenDTypeSize(TokenDType t) {
  switch (t) {
    case TokenDType::kU8:
    case TokenDType::kI8:
      return 1;
    case TokenDType::kI16:
    case TokenDType::kU16:
      return 2;
    case TokenDType::kI32:
    case TokenDType::kF32:
      return 4;
    case TokenDType::kI64:
    case TokenDType::kF64:
      return 8;
  }
  return 0;
}

IndexedDataset IndexedDataset::Open(const std::string& prefix) {
  MappedFile idx_file(prefix + ".idx");  // first, so a missing index is what gets reported
  IndexedDataset ds(std::move(idx_file), MappedFile(prefix + ".bin"));
  const std::string& idx = ds.idx_.path();
  const uint8_t* p = ds.idx_.data();
  const size_t size = ds.idx_.size();
  SM_CHECK(size >= kHeaderBytes) << "'" << idx << "' is truncated: " << size
                                 << " bytes, shorter than the " << kHeaderBytes << "-byte header";
  SM_CHECK(std::memcmp(p, kMagic, 9) == 0)
      << "'" << idx << "' has the wrong magic: not a Megatron indexed dataset index (MMIDIDX)";
  const uint64_t version = Load<uint64_t>(p + 9);
  SM_CHECK(version == kVersion) << "'" << idx << "' has version " << version
                                << "; only version 1 is supported";
  const uint8_t code = p[17];
  SM_CHECK(code >= 1 && code <= 8)
      << "'" << idx << "' has unknown dtype code " << static_cast<int>(code) << " (valid: 1..8)";
  ds.dtype_ = static_cast<TokenDType>(code);
  SM_CHECK(ds.dtype_ != TokenDType::kF32 && ds.dtype_ != TokenDType::kF64)
      << "'" << idx << "' holds " << DTypeName(ds.dtype_) << " values, not token ids";
  const uint64_t s = Load<uint64_t>(p + 18);
  const uint64_t d = Load<uint64_t>(p + 26);
  SM_CHECK(d >= 1) << "'" << idx << "' has document count 0 (the document index needs at least "
                   << "its leading 0)";
  // Sizes are checked with divisions so that huge counts cannot overflow.
  const size_t body = size - kHeaderBytes;
  SM_CHECK(s <= body / 12 && d <= (body - 12 * s) / 8)
      << "'" << idx << "' is truncated: " << size << " bytes cannot hold " << s
      << " sequence lengths and pointers and " << d << " document indices";
  const uint8_t* lengths = p + kHeaderBytes;
  ds.pointers_offset_ = kHeaderBytes + 4 * s;
  const uint8_t* docs = p + kHeaderBytes + 12 * s;

  ds.lengths_.resize(s);
  const size_t item = TokenDTypeSize(ds.dtype_);
  const std::string& bin = ds.bin_.path();
  for (uint64_t i = 0; i < s; ++i) {
    const int32_t len = Load<int32_t>(lengths + 4 * i);
    SM_CHECK(len >= 0) << "'" << idx << "': sequence_lengths[" << i << "] = " << len
                       << " is negative";
    const int64_t ptr = Load<int64_t>(p + ds.pointers_offset_ + 8 * i);
    SM_CHECK(ptr >= 0 && static_cast<uint64_t>(ptr) <= ds.bin_.size() &&
             static_cast<uint64_t>(len) * item <= ds.bin_.size() - static_cast<uint64_t>(ptr))
        << "'" << idx << "': sequence " << i << " (sequence_pointers[" << i << "] = " << ptr
        << ", sequence_lengths[" << i << "] = " << len << ") runs past the end of '" << bin << "' ("
        << ds.bin_.size() << " bytes)";
    ds.lengths_[i] = len;
    ds.num_tokens_ += len;
  }
  ds.doc_index_.resize(d);
  for (uint64_t i = 0; i < d; ++i) {
    const int64_t v = Load<int64_t>(docs + 8 * i);
    SM_CHECK(i > 0 || v == 0) << "'" << idx << "': document_indices[0] = " << v << ", expected 0";
    SM_CHECK(i == 0 || v >= ds.doc_index_[i - 1])
        << "'" << idx << "': document_indices is not monotonic: document_indices[" << i
        << "] = " << v << " < document_indices[" << i - 1 << "] = " << ds.doc_index_[i - 1];
    ds.doc_index_[i] = v;
  }
  SM_CHECK(ds.doc_index_.back() == static_cast<int64_t>(s))
      << "'" << idx << "': the last document index is " << ds.doc_index_.back() << " but there are "
      << s << " sequences";
  return ds;
}

int32_t IndexedDataset::Length(int64_t sequence) const {
  SM_CHECK(sequence >= 0 && sequence < num_sequences())
      << "sequence " << sequence << " outside the dataset '" << bin_.path() << "' ("
      << num_sequences() << " sequences)";
  return lengths_[sequence];
}

int64_t IndexedDataset::Pointer(int64_t sequence) const {
  Length(sequence);  // range check
  return Load<int64_t>(idx_.data() + pointers_offset_ + 8 * sequence);
}

void IndexedDataset::Read(int64_t sequence, std::vector<int32_t>& out) const {
  ReadRange(sequence, 0, Length(sequence), out);
}

void IndexedDataset::ReadRange(int64_t sequence, int64_t begin, int64_t count,
                               std::vector<int32_t>& out) const {
  const int32_t full = Length(sequence);
  SM_CHECK(begin >= 0 && count >= 0 && begin + count <= full)
      << "tokens [" << begin << ", " << begin + count << ") outside sequence " << sequence << " of "
      << full << " tokens in '" << bin_.path() << "'";
  const int64_t len = count;
  const uint8_t* p = bin_.data() + Pointer(sequence) + begin * TokenDTypeSize(dtype_);
  const size_t base = out.size();
  out.resize(base + len);
  int32_t* o = out.data() + base;
  for (int64_t i = 0; i < len; ++i) {
    int64_t v = 0;
    switch (dtype_) {
      case TokenDType::kU8:
        v = p[i];
        break;
      case TokenDType::kI8:
        v = static_cast<int8_t>(p[i]);
        break;
      case TokenDType::kI16:
        v = Load<int16_t>(p + 2 * i);
        break;
      case TokenDType::kU16:
        v = Load<uint16_t>(p + 2 * i);
        break;
      case TokenDType::kI32:
        v = Load<int32_t>(p + 4 * i);
        break;
      case TokenDType::kI64:
        v = Load<int64_t>(p + 8 * i);
        break;
      default:
        break;  // float types are rejected by Open
    }
    SM_CHECK(v >= 0 && v <= std::numeric_limits<int32_t>::max())
        << "'" << bin_.path() << "': token " << begin + i << " of sequence " << sequence << " is "
        << v << ", not a token id";
    o[i] = static_cast<int32_t>(v);
  }
}

IndexedDatasetWriter::IndexedDatasetWriter(std::string prefix, TokenDType dtype)
    : prefix_(std::move(prefix)), dtype_(dtype) {
  SM_CHECK(dtype != TokenDType::kF32 && dtype != TokenDType::kF64)
      << "an indexed dataset of tokens needs an integer dtype, got " << DTypeName(dtype);
}

void IndexedDatasetWriter::Add(std::span<const int32_t> tokens) {
  SM_CHECK(!finished_) << "IndexedDatasetWriter::Add after Finish for '" << prefix_ << "'";
  SM_CHECK(tokens.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
      << "a sequence of " << tokens.size() << " tokens does not fit Megatron's i32 lengths";
  const size_t item = TokenDTypeSize(dtype_);
  int64_t max = 0;
  switch (dtype_) {
    case TokenDType::kU8:
      max = 255;
      break;
    case TokenDType::kI8:
      max = 127;
      break;
    case TokenDType::kI16:
      max = 32767;
      break;
    case TokenDType::kU16:
      max = 65535;
      break;
    default:
      max = std::numeric_limits<int32_t>::max();
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    SM_CHECK(tokens[i] >= 0 && tokens[i] <= max) << "token " << tokens[i] << " at position " << i
                                                 << " does not fit dtype " << DTypeName(dtype_);
    const int64_t v = tokens[i];
    uint8_t bytes[8];
    std::memcpy(bytes, &v, 8);  // little-endian: the low bytes are the value in any width
    bin_.insert(bin_.end(), bytes, bytes + item);
  }
  lengths_.push_back(static_cast<int32_t>(tokens.size()));
}

void IndexedDatasetWriter::Finish() {
  SM_CHECK(!finished_) << "IndexedDatasetWriter::Finish called twice for '" << prefix_ << "'";
  finished_ = true;
  const uint64_t s = lengths_.size(), d = s + 1;
  std::vector<uint8_t> idx;
  auto put = [&idx](const void* v, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(v);
    idx.insert(idx.end(), b, b + n);
  };
  put(kMagic, 9);
  put(&kVersion, 8);
  const uint8_t code = static_cast<uint8_t>(dtype_);
  put(&code, 1);
  put(&s, 8);
  put(&d, 8);
  put(lengths_.data(), 4 * s);
  int64_t ptr = 0;
  for (int32_t len : lengths_) {
    put(&ptr, 8);
    ptr += static_cast<int64_t>(len) * TokenDTypeSize(dtype_);
  }
  for (int64_t i = 0; i <= static_cast<int64_t>(s); ++i) put(&i, 8);
  // The .bin first: a reader that finds the new .idx also finds its tokens.
  WriteFileAtomically(prefix_ + ".bin", bin_.data(), bin_.size());
  WriteFileAtomically(prefix_ + ".idx", idx.data(), idx.size());
}

}  // namespace seqmesh
