#include "launch/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <utility>

#include "offload/ssd_engine.h"  // Crc32c (ISA-L)
#include "runtime/check.h"

namespace seqmesh::launch {
namespace {

constexpr uint32_t kCrcMaskDelta = 0xa282ead8u;
constexpr char kFileVersion[] = "brain.Event:2";

void PutLittleEndian(uint64_t v, int bytes, std::string& out) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

double UnixSecondsNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string HostName() {
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

// A record's number field as a scalar, when it is a finite number.
void AddIfNumber(const Json& record, const char* key, std::vector<Scalar>& out) {
  const Json* v = record.Find(key);
  if (v == nullptr || !v->is_number()) return;
  const double x = v->AsDouble(key);
  if (std::isfinite(x)) out.push_back({key, x});
}

}  // namespace

uint32_t MaskedCrc32c(const void* data, size_t bytes) {
  const uint32_t crc = Crc32c(data, bytes);
  return ((crc >> 15) | (crc << 17)) + kCrcMaskDelta;
}

std::string TfRecordOf(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  PutLittleEndian(data.size(), 8, out);
  PutLittleEndian(MaskedCrc32c(out.data(), 8), 4, out);
  out.append(data);
  PutLittleEndian(MaskedCrc32c(data.data(), data.size()), 4, out);
  return out;
}

std::vector<Scalar> ScalarsOf(const Json& record) {
  std::vector<Scalar> out;
  for (const char* key : {"loss", "val_loss", "grad_norm", "lr", "tok_per_s", "mfu", "mem_mib"})
    AddIfNumber(record, key, out);
  // A job's record has each rank's memory; the chart shows the largest.
  const Json* ranks = record.Find("rank_mem_mib");
  if (record.Find("mem_mib") == nullptr && ranks != nullptr && ranks->is_array()) {
    double most = -1;
    for (const Json& m : ranks->AsArray("rank_mem_mib"))
      if (m.is_number()) most = std::max(most, m.AsDouble("rank_mem_mib"));
    if (most >= 0) out.push_back({"mem_mib", most});
  }
  return out;
}

std::string EventFileName(int64_t unix_seconds, const std::string& hostname) {
  return "events.out.tfevents." + std::to_string(unix_seconds) + "." + hostname;
}

EventFileWriter::EventFileWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  SM_CHECK(!ec) << "cannot create the TensorBoard directory '" << dir << "': " << ec.message()
                << " (metrics.tensorboard = false turns TensorBoard files off)";
  const double now = UnixSecondsNow();
  path_ = dir + "/" + EventFileName(static_cast<int64_t>(now), HostName());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  SM_CHECK(fd_ >= 0) << "cannot open the TensorBoard event file '" << path_
                     << "': " << std::strerror(errno);
  proto::tensorboard::Event version;
  version.set_wall_time(now);
  version.set_file_version(kFileVersion);
  Write(version);
}

EventFileWriter::EventFileWriter(EventFileWriter&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

EventFileWriter& EventFileWriter::operator=(EventFileWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

EventFileWriter::~EventFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void EventFileWriter::Write(const proto::tensorboard::Event& event) {
  SM_CHECK(fd_ >= 0) << "the TensorBoard event file writer was moved from";
  const std::string record = TfRecordOf(event.SerializeAsString());
  // O_APPEND: each write lands at the end; a short write is continued, never interleaved, as
  // this process is the file's only writer.
  const char* p = record.data();
  size_t left = record.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    SM_CHECK(n > 0) << "writing the TensorBoard event file '" << path_
                    << "' failed: " << (n < 0 ? std::strerror(errno) : "no progress");
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void EventFileWriter::WriteScalars(int64_t step, const std::vector<Scalar>& scalars) {
  if (scalars.empty()) return;
  proto::tensorboard::Event event;
  event.set_wall_time(UnixSecondsNow());
  event.set_step(step);
  proto::tensorboard::Summary* summary = event.mutable_summary();
  for (const Scalar& s : scalars) {
    proto::tensorboard::Summary::Value* v = summary->add_value();
    v->set_tag(s.tag);
    v->set_simple_value(static_cast<float>(s.value));
  }
  Write(event);
}

}  // namespace seqmesh::launch
