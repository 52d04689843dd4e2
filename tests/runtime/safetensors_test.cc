// JSON and safetensors: exact bytes from crafted input, round trips (F32, BF16), a model's
// weights with Hugging Face names, a named error for each kind of malformed file, and the
// streaming writer: the bytes of WriteSafetensors in any order and split, named errors for a
// write past a tensor's end and for bytes never written, nothing left behind uncommitted.
#include "runtime/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "runtime/json.h"
#include "runtime/model.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;

using testing::ThrowsWith;

TEST(Json, ParsesAndDumpsExactly) {
  const std::string text =
      R"({"a":[1,-2.5e3,true,false,null],"b":{"c":"x\"y\\z\n\u00e9\ud83d\ude00"},"big":9007199254740993})";
  const Json j = Json::Parse(text);
  EXPECT_EQ(j.Find("big")->AsInt("big"), 9007199254740993);  // beyond double precision
  EXPECT_EQ(j.Find("a")->AsArray("a")[1].AsDouble("a[1]"), -2500.0);
  EXPECT_EQ(j.Find("b")->Find("c")->AsString("c"), "x\"y\\z\n\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(Json::Parse(j.Dump()).Dump(), j.Dump());
  EXPECT_EQ(Json::Parse(" [ ] ").Dump(), "[]");
}

// Numbers keep the text they were parsed from; Float writes a float as Python's repr of its
// shortest digits; Put replaces in place; Dump(2) is json.dumps(indent=2)'s layout.
TEST(Json, FloatsPutAndIndentedDumps) {
  const Json j = Json::Parse(R"({"eps":1e-05,"theta":500000.0,"x":1.50,"e":[],"o":{}})");
  EXPECT_EQ(j.Dump(), R"({"eps":1e-05,"theta":500000.0,"x":1.50,"e":[],"o":{}})");
  EXPECT_EQ(Json::Float(1e-5f).Dump(), "1e-05");
  EXPECT_EQ(Json::Float(1e-6f).Dump(), "1e-06");
  EXPECT_EQ(Json::Float(500000.0f).Dump(), "500000.0");
  EXPECT_EQ(Json::Float(0.02f).Dump(), "0.02");
  EXPECT_EQ(Json::Float(0.0001f).Dump(), "0.0001");
  EXPECT_EQ(Json::Float(1e16f).Dump(), "1e+16");
  EXPECT_EQ(Json::Float(0.0f).Dump(), "0.0");
  EXPECT_EQ(Json::Float(-2.5f).Dump(), "-2.5");
  for (float f : {1e-5f, 3.14159265f, 1.17549435e-38f, 3.4028235e38f, 7e-45f})
    EXPECT_EQ(static_cast<float>(Json::Float(f).AsDouble("f")), f) << f;
  Json o = Json::Parse(R"({"a":1,"b":2})");
  o.Put("a", Json::String("x"));
  o.Put("c", Json::Bool(true));
  EXPECT_EQ(o.Dump(), R"({"a":"x","b":2,"c":true})");
  EXPECT_EQ(Json::Parse(R"({"a":[1,{"b":null}],"e":[]})").Dump(2),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"e\": []\n}");
}

TEST(Json, ErrorsNameTheProblemAndOffset) {
  EXPECT_TRUE(ThrowsWith([] { Json::Parse("{\"a\":1,\"a\":2}", "cfg"); },
                         "cfg: duplicate key \"a\" at byte 7"));
  EXPECT_TRUE(ThrowsWith([] { Json::Parse("[1,]"); }, "expected a value at byte 3"));
  EXPECT_TRUE(ThrowsWith([] { Json::Parse("{\"a\" 1}"); }, "expected ':'"));
  EXPECT_TRUE(ThrowsWith([] { Json::Parse("\"abc"); }, "unterminated string"));
  EXPECT_TRUE(ThrowsWith([] { Json::Parse("01"); }, "leading zero"));
  EXPECT_TRUE(ThrowsWith([] { Json::Parse("[1] x"); }, "unexpected text after the JSON value"));
  EXPECT_TRUE(ThrowsWith([] { Json::Parse(std::string(200, '[')); }, "nesting too deep"));
  EXPECT_TRUE(ThrowsWith([] { Json::Parse("1.5").AsInt("model.layers"); },
                         "model.layers must be an integer that fits 64 bits, got 1.5"));
  EXPECT_TRUE(ThrowsWith([] { Json::Parse("\"x\"").AsInt("vocab_size"); },
                         "vocab_size must be an integer, got a string"));
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("seqmesh_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = (dir_ / "model.safetensors").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A file from a header text and a buffer.
  void WriteRaw(const std::string& header, const std::vector<uint8_t>& buffer) {
    std::ofstream f(path_, std::ios::binary | std::ios::trunc);
    const uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(reinterpret_cast<const char*>(buffer.data()),
            static_cast<std::streamsize>(buffer.size()));
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(SafetensorsTest, WriterProducesTheReferenceLayoutExactly) {
  float a[2] = {1.0f, 2.0f};
  WriteSafetensors(path_, {Tensor("a", DType::kF32, {2}, a)});
  std::ifstream f(path_, std::ios::binary);
  std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(f), {}};
  std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  // Sized once and filled by memcpy (GCC 12 warns falsely on inserting string iterators).
  const uint64_t n = header.size();
  const uint8_t data[8] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40};
  std::vector<uint8_t> expected(8 + n + 8);
  std::memcpy(expected.data(), &n, 8);
  std::memcpy(expected.data() + 8, header.data(), n);
  std::memcpy(expected.data() + 8 + n, data, 8);
  EXPECT_EQ(bytes, expected);
}

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

TEST_F(SafetensorsTest, StreamingWriterGivesWriteSafetensorsBytesInAnyOrderAndSplit) {
  std::vector<float> a(6), b(5);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.5f + static_cast<float>(i);
  for (size_t i = 0; i < b.size(); ++i) b[i] = -1.25f * static_cast<float>(i);
  const std::map<std::string, std::string> meta = {{"optimizer_step", "7"}, {"rank", "1"}};
  const std::string whole = (dir_ / "whole.safetensors").string();
  WriteSafetensors(
      whole,
      {Tensor("a", DType::kF32, {2, 3}, a.data()), Tensor("empty", DType::kF32, {0}, nullptr),
       Tensor("b", DType::kF32, {5}, b.data())},
      false, meta);
  SafetensorsWriter w(path_, {{"a", "F32", {2, 3}}, {"empty", "F32", {0}}, {"b", "F32", {5}}},
                      meta);
  EXPECT_EQ(w.tensor_bytes(0), 24u);
  EXPECT_EQ(w.tensor_bytes(1), 0u);
  // b's tail, a in three pieces last to first (one written twice), then b's head.
  w.Write(2, 12, b.data() + 3, 8);
  w.Write(0, 16, a.data() + 4, 8);
  w.Write(0, 4, a.data() + 1, 12);
  w.Write(0, 0, a.data(), 8);
  w.Write(2, 0, b.data(), 12);
  EXPECT_FALSE(fs::exists(path_));  // nothing appears before Commit
  w.Commit();
  EXPECT_EQ(ReadBytes(path_), ReadBytes(whole));
}

TEST_F(SafetensorsTest, StreamingWriterNamesBadWritesAndUnwrittenBytes) {
  const float x[4] = {1, 2, 3, 4};
  {
    SafetensorsWriter w(path_, {{"a", "F32", {2}}, {"b", "F32", {3}}});
    EXPECT_TRUE(ThrowsWith([&] { w.Write(1, 4, x, 12); },
                           "writing bytes [4, 16) of tensor 'b' runs past its 12 bytes"));
    EXPECT_TRUE(ThrowsWith([&] { w.Write(2, 0, x, 4); }, "has no tensor 2"));
    w.Write(0, 0, x, 8);
    w.Write(1, 0, x, 4);
    w.Write(1, 8, x, 4);
    EXPECT_TRUE(ThrowsWith([&] { w.Commit(); },
                           "bytes [4, 8) of tensor 'b' (12 bytes) were never written"));
  }
  {
    SafetensorsWriter w(path_, {{"a", "F32", {2}}});
    w.Write(0, 4, x, 4);
    EXPECT_TRUE(
        ThrowsWith([&] { w.Commit(); }, "bytes [0, 4) of tensor 'a' (8 bytes) were never written"));
  }
  {
    SafetensorsWriter w(path_, {{"a", "F32", {2}}});  // destroyed uncommitted
  }
  EXPECT_FALSE(fs::exists(path_));
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        SafetensorsWriter(path_, {{"a", "F32", {1}}, {"a", "F32", {1}}});
      },
      "two tensors named 'a'"));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        SafetensorsWriter(path_, {{"q", "Q4", {1}}});
      },
      "tensor 'q' has unknown dtype Q4"));
}

TEST_F(SafetensorsTest, ModelWeightsRoundTripInF32AndBf16) {
  ModelConfig c;
  c.vocab = 31;
  c.hidden = 16;
  c.layers = 2;
  c.heads = 2;
  c.kv_heads = 1;
  c.ffn = 24;
  ModelOptions o;
  o.max_tokens = 4;
  Model a(c, o), b(c, o);
  a.InitRandom(3, 0.5f);
  for (bool bf16 : {false, true}) {
    WriteSafetensors(path_, a.params(), bf16, {{"seqmesh", "test"}});
    SafetensorsFile f = SafetensorsFile::Open(path_);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_EQ(f.metadata().at("seqmesh"), "test");
    ASSERT_EQ(f.entries().size(), a.params().size());
    EXPECT_NE(f.Find("model.layers.1.mlp.down_proj.weight"), nullptr);
    for (const Tensor& p : b.params()) f.ReadInto(p.name(), p);
    for (size_t i = 0; i < a.params().size(); ++i) {
      const Tensor& x = a.params()[i];
      const Tensor& y = b.params()[i];
      for (int64_t k = 0; k < x.numel(); ++k) {
        const float want = bf16 ? Bf16ToFloat(FloatToBf16(x.f32()[k])) : x.f32()[k];
        ASSERT_EQ(y.f32()[k], want) << x.name() << "[" << k << "] bf16=" << bf16;
      }
    }
  }
}

TEST_F(SafetensorsTest, ReadsOtherKeyOrderF16AndPaddedHeaders) {
  // F16 1.0 = 0x3c00, -2.0 = 0xc000; a rank-0 F32 and an empty tensor; metadata first or last.
  WriteRaw(
      R"({"h":{"shape":[2],"dtype":"F16","data_offsets":[4,8]},"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]}}   )",
      {0, 0, 0x40, 0x40, 0x00, 0x3c, 0x00, 0xc0});
  SafetensorsFile f = SafetensorsFile::Open(path_);
  float h[2];
  f.ReadInto("h", Tensor("h", DType::kF32, {2}, h));
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  float s;
  f.ReadInto("s", Tensor("s", DType::kF32, Shape(), &s));
  EXPECT_EQ(s, 3.0f);
  float w[4];
  EXPECT_TRUE(ThrowsWith([&] { f.ReadInto("h", Tensor("w", DType::kF32, {4}, w)); },
                         "tensor 'h' has shape [2], expected [4] for 'w'"));
  EXPECT_TRUE(ThrowsWith([&] { f.ReadInto("nope", Tensor("w", DType::kF32, {4}, w)); },
                         "has no tensor 'nope'"));
}

TEST_F(SafetensorsTest, MalformedFilesAreNamed) {
  const std::vector<uint8_t> eight(8, 0);
  auto expect = [&](const std::string& header, const std::vector<uint8_t>& buf,
                    const std::string& part) {
    WriteRaw(header, buf);
    EXPECT_TRUE(ThrowsWith([&] { SafetensorsFile::Open(path_); }, part)) << header;
  };
  expect(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", eight, "header: expected");
  expect(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", eight,
         "tensor 'a' has unknown dtype Q4");
  expect(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight,
         "data_offsets span 8 bytes but shape x F32 needs 12");
  expect(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight,
         "lie outside the 8-byte buffer");
  expect(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})", eight,
         "negative dimension -1");
  expect(R"({"a":{"dtype":"F32","shape":[2]}})", eight, "needs dtype, shape and data_offsets");
  expect(
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
      eight, "(overlap or gap)");
  expect(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight, "(overlap or gap)");
  expect(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight,
         "the tensors cover 4 bytes of a 8-byte buffer");
  expect(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{}})", eight,
         "duplicate key \"a\"");
  // Header size beyond the file, and a file too short for the size field.
  {
    std::ofstream f(path_, std::ios::binary | std::ios::trunc);
    const uint64_t n = 1000;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write("{}", 2);
  }
  EXPECT_TRUE(ThrowsWith([&] { SafetensorsFile::Open(path_); },
                         "is truncated: header size 1000 but only 2 bytes follow"));
  {
    std::ofstream f(path_, std::ios::binary | std::ios::trunc);
    f.write("abc", 3);
  }
  EXPECT_TRUE(ThrowsWith([&] { SafetensorsFile::Open(path_); }, "is truncated: 3 bytes"));
  {
    std::ofstream f(path_, std::ios::binary | std::ios::trunc);
    const uint64_t n = 200ull << 20;
    f.write(reinterpret_cast<const char*>(&n), 8);
  }
  EXPECT_TRUE(ThrowsWith([&] { SafetensorsFile::Open(path_); }, "exceeds the 100 MB limit"));
}

}  // namespace
}  // namespace seqmesh
