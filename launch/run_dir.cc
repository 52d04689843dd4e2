#include "launch/run_dir.h"

#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <sstream>

#include "launch/job_checkpoint.h"
#include "runtime/check.h"
#include "runtime/files.h"
#include "runtime/manifest.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

int64_t MetricsRecords(const std::string& path) {
  std::ifstream f(path);
  int64_t n = 0;
  for (std::string line; std::getline(f, line);) n += !line.empty();
  return n;
}

// The files of a run in its directory: step directories (committed or not, and set aside),
// and what the run writes beside them. The current job's .launch/ is not the earlier run's.
std::vector<fs::path> RunFiles(const RunConfig& config) {
  std::vector<fs::path> out;
  const fs::path root = config.checkpoint.dir;
  if (!fs::is_directory(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    const size_t dot = name.find(".corrupt");
    const std::string stem = dot == std::string::npos ? name : name.substr(0, dot);
    if (e.is_directory() && StepOfDirName(stem) >= 0) out.push_back(e.path());
  }
  for (const char* name : {"config.toml", "generation", "refit.cost"})
    if (fs::exists(root / name)) out.push_back(root / name);
  if (fs::exists(config.tensorboard_dir())) out.push_back(config.tensorboard_dir());
  if (fs::exists(config.trace_dir())) out.push_back(config.trace_dir());
  return out;
}

// Model shape, data and its split or permutation: a checkpoint of one cannot go on as another.
bool CannotResumeAcross(const std::string& key) {
  return key.rfind("model.", 0) == 0 || key == "data.path" || key == "data.validation_fraction" ||
         key == "training.seed";
}

}  // namespace

std::string DescribeEarlierRun(const RunConfig& config) {
  std::ostringstream why;
  const auto committed = CommittedStepDirs(config.checkpoint.dir);
  if (!committed.empty())
    why << committed.size() << " committed checkpoint(s), the newest after step "
        << committed.front().first;
  const std::vector<std::string> aside = CorruptStepDirs(config.checkpoint.dir);
  if (!aside.empty())
    why << (why.tellp() > 0 ? ", " : "") << aside.size() << " set aside as corrupt";
  const int64_t records = MetricsRecords(config.metrics_path());
  if (records > 0)
    why << (why.tellp() > 0 ? ", " : "") << "'" << config.metrics_path() << "' with " << records
        << " record(s)";
  return why.str();
}

void PrepareFreshRun(const RunConfig& config, bool overwrite, std::ostream& out,
                     const std::string& who) {
  const std::string earlier = DescribeEarlierRun(config);
  if (earlier.empty()) return;
  const std::string dir = config.checkpoint.dir;
  SM_CHECK(overwrite) << "'" << dir << "' holds an earlier run (" << earlier
                      << "): continue it with --resume, or start a new one with --overwrite "
                         "(the earlier run is moved aside into "
                      << dir << "/overwritten-<time>/), or choose another checkpoint.dir";
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::gmtime(&now));
  fs::path aside = fs::path(dir) / (std::string("overwritten-") + stamp);
  for (int k = 1; fs::exists(aside); ++k)
    aside = fs::path(dir) / (std::string("overwritten-") + stamp + "." + std::to_string(k));
  fs::create_directories(aside);
  for (const fs::path& p : RunFiles(config)) fs::rename(p, aside / p.filename());
  const fs::path metrics = config.metrics_path();
  if (fs::exists(metrics)) fs::rename(metrics, aside / metrics.filename());
  out << who << ": --overwrite: the earlier run (" << earlier << ") is now in " << aside.string()
      << std::endl;
}

std::vector<std::string> CheckResumedConfig(const RunConfig& config, std::ostream& out,
                                            const std::string& who) {
  const std::string path = config.checkpoint.dir + "/config.toml";
  std::vector<std::string> changes;
  if (!fs::exists(path)) return changes;
  RunConfig saved;
  try {
    saved = RunConfig::Load(path);
  } catch (const Error& e) {
    out << who << ": warning: cannot read the run's saved configuration (" << e.what()
        << "); resuming without comparing it" << std::endl;
    return changes;
  }
  const auto saved_values = saved.Values();
  const std::map<std::string, std::string> before(saved_values.begin(), saved_values.end());
  std::vector<std::string> refused;
  for (const auto& [key, value] : config.Values()) {
    const auto it = before.find(key);
    const std::string old = it == before.end() ? "(unset)" : it->second;
    if (old == value) continue;
    changes.push_back(key + ": " + old + " -> " + value);
    if (CannotResumeAcross(key)) refused.push_back(changes.back());
  }
  if (!refused.empty()) {
    std::ostringstream all;
    for (const std::string& r : refused) all << "\n  " << r;
    SM_CHECK(false) << "--resume: the configuration differs from the run's (" << path
                    << ") where a checkpoint cannot follow:" << all.str()
                    << "\nResume with the run's values, or start a new run in another "
                       "checkpoint.dir (or with --overwrite, without --resume)";
  }
  for (const std::string& c : changes)
    out << who << ": --resume: changed from the run's configuration: " << c << std::endl;
  return changes;
}

}  // namespace seqmesh::launch
