// TensorBoard event files (launch/tensorboard.h): TFRecord framing byte for byte against a
// bitwise CRC32C written from the spec (checked against its check value 0xE3069283), the Event
// fields at TensorFlow's numbers, and a written file read back record by record.
#include "launch/tensorboard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

// CRC32C one bit at a time (reflected polynomial 0x82F63B78, initial and final inversion).
uint32_t ReferenceCrc32c(std::string_view s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0u);
  }
  return ~c;
}

uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

std::string Bytes(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

std::string LittleEndian32(uint32_t v) {
  return Bytes({int(v & 0xff), int((v >> 8) & 0xff), int((v >> 16) & 0xff), int(v >> 24)});
}

TEST(TensorBoardRecord, MasksTheStandardCheckValue) {
  ASSERT_EQ(ReferenceCrc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Mask(0xE3069283u), 0xC78AB0E5u);
  EXPECT_EQ(MaskedCrc32c("123456789", 9), 0xC78AB0E5u);
}

TEST(TensorBoardRecord, FramesDataAsLengthCrcDataCrc) {
  const std::string length = Bytes({9, 0, 0, 0, 0, 0, 0, 0});
  ASSERT_EQ(ReferenceCrc32c(length), 0x872FCB77u);  // bitwise, above; also Python's, by hand
  const std::string expected =
      length + Bytes({0x37, 0xf9, 0x71, 0x39}) + "123456789" + Bytes({0xe5, 0xb0, 0x8a, 0xc7});
  EXPECT_EQ(LittleEndian32(Mask(ReferenceCrc32c(length))), expected.substr(8, 4));
  EXPECT_EQ(TfRecordOf("123456789"), expected);
}

TEST(TensorBoardRecord, ScalarEventHasTensorFlowsFieldNumbersAndExactFrame) {
  proto::tensorboard::Event event;
  event.set_wall_time(1.5);
  event.set_step(7);
  auto* v = event.mutable_summary()->add_value();
  v->set_tag("loss");
  v->set_simple_value(2.5f);
  // wall_time: field 1, fixed64 (0x09), 1.5 as a little-endian double; step: field 2, varint
  // (0x10); summary: field 5, length-delimited (0x2a), 13 bytes; its value: field 1 (0x0a), 11
  // bytes; tag: field 1 (0x0a) "loss"; simple_value: field 2, fixed32 (0x15), 2.5f.
  const std::string data =
      Bytes({0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x10, 0x07, 0x2a, 0x0d, 0x0a, 0x0b, 0x0a, 0x04}) +
      "loss" + Bytes({0x15, 0x00, 0x00, 0x20, 0x40});
  ASSERT_EQ(event.SerializeAsString(), data);
  const std::string length = Bytes({26, 0, 0, 0, 0, 0, 0, 0});
  const std::string expected = length + LittleEndian32(Mask(ReferenceCrc32c(length))) + data +
                               LittleEndian32(Mask(ReferenceCrc32c(data)));
  EXPECT_EQ(TfRecordOf(data), expected);
  EXPECT_EQ(expected.substr(8, 4), Bytes({0x12, 0x9b, 0xd8, 0x2d}));   // masked 0x2DD89B12
  EXPECT_EQ(expected.substr(38, 4), Bytes({0x78, 0x41, 0xdd, 0xb1}));  // masked 0xB1DD4178
}

// The records of an event file, each CRC checked.
std::vector<proto::tensorboard::Event> ReadEvents(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<proto::tensorboard::Event> events;
  size_t at = 0;
  while (at < bytes.size()) {
    EXPECT_GE(bytes.size() - at, 16u) << "a torn record at byte " << at;
    if (bytes.size() - at < 16) break;
    uint64_t length = 0;
    std::memcpy(&length, bytes.data() + at, 8);
    EXPECT_EQ(bytes.substr(at + 8, 4), LittleEndian32(Mask(ReferenceCrc32c(bytes.substr(at, 8)))));
    const std::string data = bytes.substr(at + 12, length);
    EXPECT_EQ(bytes.substr(at + 12 + length, 4), LittleEndian32(Mask(ReferenceCrc32c(data))));
    proto::tensorboard::Event e;
    EXPECT_TRUE(e.ParseFromString(data));
    events.push_back(e);
    at += 16 + length;
  }
  return events;
}

TEST(EventFileWriter, WritesTheVersionThenOneEventPerStep) {
  const fs::path dir = fs::temp_directory_path() / ("tb_test_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  std::string path;
  {
    EventFileWriter w((dir / "tensorboard").string());
    path = w.path();
    w.WriteScalars(1, {{"loss", 5.25}, {"lr", 1e-3}});
    w.WriteScalars(2, {});  // nothing to write
    w.WriteScalars(3, {{"loss", 4.75}});
  }
  const std::string name = fs::path(path).filename().string();
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  EXPECT_EQ(fs::path(path).parent_path(), dir / "tensorboard");
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_EQ(name.substr(name.size() - std::strlen(host) - 1), std::string(".") + host) << name;

  const auto events = ReadEvents(path);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_GT(events[0].wall_time(), 1.5e9);
  EXPECT_EQ(events[1].step(), 1);
  ASSERT_EQ(events[1].summary().value_size(), 2);
  EXPECT_EQ(events[1].summary().value(0).tag(), "loss");
  EXPECT_EQ(events[1].summary().value(0).simple_value(), 5.25f);
  EXPECT_EQ(events[1].summary().value(1).tag(), "lr");
  EXPECT_EQ(events[1].summary().value(1).simple_value(), 1e-3f);
  EXPECT_EQ(events[2].step(), 3);
  EXPECT_EQ(events[2].summary().value(0).simple_value(), 4.75f);
  fs::remove_all(dir);
}

TEST(TensorBoardScalars, TakesARecordsChartedFieldsAndSkipsNulls) {
  const Json train =
      Json::Parse(R"({"step":4,"loss":null,"grad_norm":1.5,"lr":0.002,"tokens":9,"val_loss":3.5,)"
                  R"("tok_per_s":100,"mem_mib":12.5,"skipped":true})");
  std::vector<std::pair<std::string, double>> got;
  for (const Scalar& s : ScalarsOf(train)) got.emplace_back(s.tag, s.value);
  const std::vector<std::pair<std::string, double>> want = {
      {"val_loss", 3.5}, {"grad_norm", 1.5}, {"lr", 0.002}, {"tok_per_s", 100}, {"mem_mib", 12.5}};
  EXPECT_EQ(got, want);

  // A job's record: memory per rank, the chart shows the largest.
  const Json job = Json::Parse(R"({"step":1,"loss":5,"rank_mem_mib":[10,30,null,20]})");
  got.clear();
  for (const Scalar& s : ScalarsOf(job)) got.emplace_back(s.tag, s.value);
  const std::vector<std::pair<std::string, double>> want_job = {{"loss", 5}, {"mem_mib", 30}};
  EXPECT_EQ(got, want_job);
}

}  // namespace
}  // namespace seqmesh::launch
