#include "launch/metrics_file.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "runtime/check.h"
#include "runtime/files.h"
#include "runtime/json.h"

namespace seqmesh::launch {

int64_t SupersedeRecordsAfter(const std::string& path, uint64_t step) {
  if (!std::filesystem::exists(path)) return 0;
  std::ifstream in(path);
  std::string kept, moved;
  int64_t count = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    bool keep = false;
    try {
      const Json record = Json::Parse(line, path);
      const Json* s = record.Find("step");
      keep = s != nullptr && s->AsInt(path + " step") <= static_cast<int64_t>(step);
    } catch (const Error&) {
      keep = false;  // not a record: kept aside with the superseded ones
    }
    (keep ? kept : moved) += line + "\n";
    count += !keep;
  }
  if (count == 0) return 0;
  {
    std::ofstream aside(path + ".superseded", std::ios::app);
    aside << moved;
    SM_CHECK(aside.good()) << "cannot append to '" << path << ".superseded'";
  }
  WriteFileAtomically(path, kept.data(), kept.size());
  return count;
}

double ResidentMiB() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

std::string UtcTimestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  char buf[40];
  std::tm tm{};
  gmtime_r(&t, &tm);
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", ms);
  return buf;
}

}  // namespace seqmesh::launch
