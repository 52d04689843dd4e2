#include "launch/machine_peak.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "launch/machine.h"
#include "runtime/check.h"
#include "runtime/cpu/peak.h"
#include "runtime/cpu/vec.h"
#include "runtime/files.h"
#include "runtime/json.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

std::string CacheDir() {
  if (const char* d = std::getenv("SEQMESH_CACHE_DIR"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/seqmesh";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/seqmesh";
  return "";
}

}  // namespace

MachinePeak::MachinePeak(int threads)
    : threads_(threads), cpu_(CpuModelName()), isa_(cpu::Vec().isa) {
  const std::string dir = CacheDir();
  if (!dir.empty()) path_ = dir + "/peak-" + std::to_string(threads) + "-threads.json";
  if (!path_.empty() && fs::exists(path_)) {
    try {
      std::ifstream f(path_);
      std::stringstream text;
      text << f.rdbuf();
      const Json j = Json::Parse(text.str(), path_);
      if (j.Require("cpu", path_).AsString("cpu") == cpu_ &&
          j.Require("isa", path_).AsString("isa") == isa_) {
        gflops_ = j.Require("gflops", path_).AsDouble("gflops");
        source_ = path_;
      }
    } catch (const Error&) {
      gflops_ = 0;  // unreadable: measured again and rewritten
    }
  }
  if (gflops_ > 0) return;
  for (int run = 0; run < 5; ++run) gflops_ = std::max(gflops_, MeasureFmaPeakGflops(threads));
  source_ = "measured";
  Save();
}

double MachinePeak::Mfu(double achieved_gflops) {
  if (gflops_ <= 0) return 0;
  if (achieved_gflops > gflops_) {
    gflops_ = achieved_gflops;
    Save();
  }
  return achieved_gflops / gflops_;
}

void MachinePeak::Save() const {
  if (path_.empty() || gflops_ <= 0) return;
  Json j = Json::Object();
  j.Set("cpu", Json::String(cpu_));
  j.Set("isa", Json::String(isa_));
  j.Set("threads", Json::Integer(threads_));
  j.Set("gflops", Json::Number(gflops_));
  const std::string text = j.Dump() + "\n";
  try {
    fs::create_directories(fs::path(path_).parent_path());
    WriteFileAtomically(path_, text.data(), text.size());
  } catch (const std::exception&) {
    // A cache that cannot be written costs a measurement next time, nothing else.
  }
}

}  // namespace seqmesh::launch
