#include "launch/run_trace.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "runtime/check.h"
#include "runtime/trace.h"

namespace seqmesh::launch {

namespace fs = std::filesystem;

RunTrace::RunTrace(const RunConfig& config, int rank, std::optional<uint64_t> generation,
                   const std::string& process_name) {
  if (!config.metrics.trace || trace::IsOpen()) return;
  const std::string dir = config.trace_dir();
  std::error_code ec;
  fs::create_directories(dir, ec);
  SM_CHECK(!ec) << "cannot make the trace directory '" << dir << "': " << ec.message()
                << " (metrics.trace = false turns traces off)";
  auto name = [&](uint64_t g) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "/rank-%05d.gen-%llu.json", rank,
                  static_cast<unsigned long long>(g));
    return dir + buf;
  };
  uint64_t g = generation.value_or(0);
  if (!generation)
    while (fs::exists(name(g))) ++g;
  path_ = name(g);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  trace::Open(path_, rank, process_name + " (" + host + ", pid " + std::to_string(getpid()) + ")");
}

RunTrace::~RunTrace() {
  if (!path_.empty()) trace::Close();
}

}  // namespace seqmesh::launch
