// Megatron indexed dataset: byte-exact files from crafted input, round trips for every token
// dtype, and a clear error naming the file and field for every kind of malformed file.
#include "runtime/indexed_dataset.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "runtime/check.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void WriteBytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
template <typename T>
void Put(std::vector<uint8_t>& b, T v) {
  uint8_t x[sizeof(T)];
  std::memcpy(x, &v, sizeof(T));
  b.insert(b.end(), x, x + sizeof(T));
}
template <typename T>
void Poke(std::vector<uint8_t>& b, size_t offset, T v) {
  std::memcpy(b.data() + offset, &v, sizeof(T));
}

class IndexedDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("seqmesh_idx_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    prefix_ = (dir_ / "data").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Two documents, [1, 2, 3] and [7], as uint16.
  void WriteSmall() {
    IndexedDatasetWriter w(prefix_, TokenDType::kU16);
    const std::vector<int32_t> a = {1, 2, 3}, b = {7};
    w.Add(a);
    w.Add(b);
    w.Finish();
  }

  // Opening must fail with a message containing every one of `parts`.
  void ExpectOpenError(std::initializer_list<std::string> parts) {
    try {
      IndexedDataset::Open(prefix_);
      ADD_FAILURE() << "malformed dataset accepted";
    } catch (const Error& e) {
      const std::string m = e.what();
      for (const std::string& p : parts) EXPECT_NE(m.find(p), std::string::npos) << m;
    }
  }

  fs::path dir_;
  std::string prefix_;
};

TEST_F(IndexedDatasetTest, WriterProducesMegatronBytesExactly) {
  WriteSmall();
  std::vector<uint8_t> idx = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
  Put<uint64_t>(idx, 1);  // version
  idx.push_back(8);       // uint16
  Put<uint64_t>(idx, 2);  // sequences
  Put<uint64_t>(idx, 3);  // documents + 1
  Put<int32_t>(idx, 3);
  Put<int32_t>(idx, 1);  // lengths
  Put<int64_t>(idx, 0);
  Put<int64_t>(idx, 6);  // byte pointers
  for (int64_t i : {0, 1, 2}) Put<int64_t>(idx, i);
  EXPECT_EQ(ReadBytes(prefix_ + ".idx"), idx);
  EXPECT_EQ(ReadBytes(prefix_ + ".bin"), (std::vector<uint8_t>{1, 0, 2, 0, 3, 0, 7, 0}));
  EXPECT_FALSE(fs::exists(prefix_ + ".idx.tmp"));
}

TEST_F(IndexedDatasetTest, RoundTripsEveryTokenDType) {
  for (TokenDType t : {TokenDType::kU8, TokenDType::kI8, TokenDType::kI16, TokenDType::kU16,
                       TokenDType::kI32, TokenDType::kI64}) {
    const int32_t top = t == TokenDType::kI8 ? 127 : t == TokenDType::kU8 ? 255 : 30000;
    std::vector<std::vector<int32_t>> docs = {{0, top, 5}, {}, {top - 1}};
    IndexedDatasetWriter w(prefix_, t);
    for (const auto& d : docs) w.Add(d);
    w.Finish();
    IndexedDataset ds = IndexedDataset::Open(prefix_);
    ASSERT_EQ(ds.num_sequences(), 3);
    EXPECT_EQ(ds.num_documents(), 3);
    EXPECT_EQ(ds.num_tokens(), 4);
    for (int i = 0; i < 3; ++i) {
      std::vector<int32_t> got;
      ds.Read(i, got);
      EXPECT_EQ(got, docs[i]) << "dtype " << static_cast<int>(t);
    }
  }
}

TEST_F(IndexedDatasetTest, ReadRangeReadsAPieceAndChecksItsBounds) {
  WriteSmall();
  IndexedDataset ds = IndexedDataset::Open(prefix_);
  std::vector<int32_t> got = {42};
  ds.ReadRange(0, 1, 2, got);
  EXPECT_EQ(got, (std::vector<int32_t>{42, 2, 3}));
  try {
    ds.ReadRange(0, 2, 2, got);
    ADD_FAILURE() << "a range past the sequence was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokens [2, 4) outside sequence 0 of 3 tokens"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(IndexedDatasetTest, WriterRejectsTokensOutsideTheDType) {
  IndexedDatasetWriter w(prefix_, TokenDType::kU8);
  const std::vector<int32_t> bad = {3, 256};
  try {
    w.Add(bad);
    ADD_FAILURE() << "256 accepted as uint8";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token 256 at position 1 does not fit dtype uint8"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(IndexedDatasetTest, WrongMagic) {
  WriteSmall();
  auto idx = ReadBytes(prefix_ + ".idx");
  idx[0] = 'X';
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({prefix_ + ".idx", "wrong magic"});
}

TEST_F(IndexedDatasetTest, UnknownVersion) {
  WriteSmall();
  auto idx = ReadBytes(prefix_ + ".idx");
  Poke<uint64_t>(idx, 9, 2);
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({prefix_ + ".idx", "version 2"});
}

TEST_F(IndexedDatasetTest, UnknownAndFloatDTypes) {
  WriteSmall();
  auto idx = ReadBytes(prefix_ + ".idx");
  idx[17] = 9;
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({prefix_ + ".idx", "unknown dtype code 9"});
  idx[17] = 7;
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({prefix_ + ".idx", "float32 values, not token ids"});
}

TEST_F(IndexedDatasetTest, TruncatedIndex) {
  WriteSmall();
  auto idx = ReadBytes(prefix_ + ".idx");
  idx.resize(idx.size() - 5);
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({prefix_ + ".idx", "truncated", "2 sequence lengths"});
  idx.resize(20);
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({prefix_ + ".idx", "truncated", "header"});
}

TEST_F(IndexedDatasetTest, PointerOrLengthPastTheEndOfBin) {
  WriteSmall();
  auto idx = ReadBytes(prefix_ + ".idx");
  Poke<int64_t>(idx, 34 + 8 + 8, 7);  // pointer of sequence 1: 7 + 2 bytes > 8
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({"sequence 1", "sequence_pointers[1] = 7", "past the end of", prefix_ + ".bin"});
  WriteSmall();
  idx = ReadBytes(prefix_ + ".idx");
  Poke<int32_t>(idx, 34, 9);  // length of sequence 0: 18 bytes > 8
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({"sequence_lengths[0] = 9", "past the end of"});
  WriteSmall();
  idx = ReadBytes(prefix_ + ".idx");
  Poke<int32_t>(idx, 34, -1);
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({"sequence_lengths[0] = -1 is negative"});
}

TEST_F(IndexedDatasetTest, TruncatedBin) {
  WriteSmall();
  auto bin = ReadBytes(prefix_ + ".bin");
  bin.resize(7);
  WriteBytes(prefix_ + ".bin", bin);
  ExpectOpenError({"sequence 1", "past the end of", prefix_ + ".bin", "(7 bytes)"});
}

TEST_F(IndexedDatasetTest, NonMonotonicDocumentIndices) {
  WriteSmall();
  auto idx = ReadBytes(prefix_ + ".idx");
  const size_t docs = 34 + 12 * 2;
  Poke<int64_t>(idx, docs + 8, 2);
  Poke<int64_t>(idx, docs + 16, 1);
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({"document_indices is not monotonic", "document_indices[2] = 1"});
  Poke<int64_t>(idx, docs + 8, 1);
  Poke<int64_t>(idx, docs + 16, 1);
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({"last document index is 1 but there are 2 sequences"});
  Poke<int64_t>(idx, docs, 1);
  WriteBytes(prefix_ + ".idx", idx);
  ExpectOpenError({"document_indices[0] = 1, expected 0"});
}

TEST_F(IndexedDatasetTest, MissingFilesAreNamed) {
  ExpectOpenError({prefix_ + ".idx", "cannot open"});
  WriteSmall();
  fs::remove(prefix_ + ".bin");
  ExpectOpenError({prefix_ + ".bin", "cannot open"});
}

}  // namespace
}  // namespace seqmesh
