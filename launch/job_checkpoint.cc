#include "launch/job_checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>

#include "launch/job_token.h"
#include "runtime/check.h"
#include "runtime/checkpoint.h"
#include "runtime/files.h"
#include "runtime/json.h"
#include "runtime/manifest.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

std::string ReadFileText(const std::string& path) {
  MappedFile f(path);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

}  // namespace

std::string CheckpointRoot(const RunConfig& config) { return config.checkpoint.dir; }

std::string CheckpointStepDir(const RunConfig& config, uint64_t step) {
  return StepDir(CheckpointRoot(config), step);
}

std::string CheckPartFileName(const std::string& name) {
  if (name == kCoordinatorJson) return "is reserved for the coordinator's own file";
  return CheckFileName(name);
}

std::string CheckPartFile(const std::string& dir, const proto::FileDigest& f) {
  const std::string path = dir + "/" + f.name();
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return ".name: '" + path + "' is not a regular file";
  if (static_cast<uint64_t>(st.st_size) != f.bytes())
    return ".bytes: '" + path + "' has " + std::to_string(st.st_size) + " bytes, the part says " +
           std::to_string(f.bytes());
  uint64_t sum = 0;
  try {
    MappedFile m(path);
    sum = Fnv1a64(m.data(), m.size());
  } catch (const Error& e) {
    return std::string(".name: ") + e.what();
  }
  if (Hex16(sum) != f.fnv1a64())
    return ".fnv1a64: '" + path + "' has checksum " + Hex16(sum) + ", the part says " + f.fnv1a64();
  return "";
}

CommittedCheckpoint ReadCommittedCheckpoint(const std::string& dir) {
  const std::string manifest_path = dir + "/" + kManifestName;
  const Json manifest = VerifyManifest(dir);
  bool has_coordinator_json = false;
  for (const Json& e : manifest.Require("files", manifest_path).AsArray(manifest_path + " files"))
    has_coordinator_json |=
        e.Require("name", manifest_path).AsString(manifest_path + " name") == kCoordinatorJson;
  SM_CHECK(has_coordinator_json) << "'" << manifest_path << "' does not list " << kCoordinatorJson;
  const std::string cj_path = dir + "/" + kCoordinatorJson;
  const Json cj = Json::Parse(ReadFileText(cj_path), cj_path);
  CommittedCheckpoint out;
  out.dir = fs::absolute(dir).lexically_normal().string();
  const int64_t step = cj.Require("step", cj_path).AsInt(cj_path + " step");
  SM_CHECK(step >= 0) << cj_path << ": step " << step << " is negative";
  out.step = static_cast<uint64_t>(step);
  SM_CHECK(manifest.Require("step", manifest_path).AsInt(manifest_path + " step") == step)
      << "'" << manifest_path << "' and '" << cj_path << "' name different steps";
  out.cursor = CursorFromJson(cj.Require("cursor", cj_path), cj_path + " cursor");
  out.generation =
      static_cast<uint64_t>(cj.Require("generation", cj_path).AsInt(cj_path + " generation"));
  out.world_size =
      static_cast<int>(cj.Require("world_size", cj_path).AsInt(cj_path + " world_size"));
  out.job_id = cj.Require("job_id", cj_path).AsString(cj_path + " job_id");
  return out;
}

uint64_t WriteJobCommit(const std::string& dir, const JobCommit& commit) {
  const int world_size = static_cast<int>(commit.parts.size());
  Json cj = Json::Object();
  cj.Set("step", Json::Integer(static_cast<int64_t>(commit.step)));
  cj.Set("cursor", CursorToJson(commit.cursor));
  cj.Set("generation", Json::Integer(static_cast<int64_t>(commit.generation)));
  cj.Set("world_size", Json::Integer(world_size));
  cj.Set("job_id", Json::String(commit.job_id));
  const std::string cj_text = cj.Dump() + "\n";
  WriteFileAtomically(dir + "/" + kCoordinatorJson, cj_text.data(), cj_text.size());

  std::vector<ManifestFile> files;
  uint64_t total = cj_text.size();
  for (int r = 0; r < world_size; ++r) {
    for (const proto::FileDigest& f : commit.parts[r]) {
      files.push_back({f.name(), f.bytes(), std::stoull(f.fnv1a64(), nullptr, 16), r});
      total += f.bytes();
    }
  }
  files.push_back({kCoordinatorJson, cj_text.size(), Fnv1a64(cj_text.data(), cj_text.size())});
  Json extra = Json::Object();
  extra.Set("world_size", Json::Integer(world_size));
  extra.Set("generation", Json::Integer(static_cast<int64_t>(commit.generation)));
  extra.Set("job_id", Json::String(commit.job_id));
  WriteManifest(dir, commit.step, files, extra);
  return total;
}

void PruneJobCheckpoints(const std::string& root, int64_t keep, uint64_t step,
                         const std::function<bool(uint64_t)>& assembling) {
  const auto committed = CommittedStepDirs(root);
  for (size_t i = static_cast<size_t>(keep); i < committed.size(); ++i)
    if (committed[i].first < step) fs::remove_all(committed[i].second);
  for (const auto& entry : fs::directory_iterator(root)) {
    const int64_t s = StepOfDirName(entry.path().filename().string());
    if (!entry.is_directory() || s < 0 || fs::exists(entry.path() / kManifestName)) continue;
    if (static_cast<uint64_t>(s) < step && !assembling(static_cast<uint64_t>(s)))
      fs::remove_all(entry.path());
  }
}

std::vector<proto::FileDigest> DigestFiles(const std::string& dir,
                                           const std::vector<std::string>& names) {
  std::vector<proto::FileDigest> out;
  for (const std::string& name : names) {
    const ManifestFile f = DigestFile(dir, name);
    proto::FileDigest& d = out.emplace_back();
    d.set_name(name);
    d.set_bytes(f.bytes);
    d.set_fnv1a64(Hex16(f.fnv1a64));
  }
  return out;
}

std::optional<CommittedCheckpoint> NewestUsableCheckpoint(const std::string& root,
                                                          std::ostream& log,
                                                          const std::string& who) {
  std::vector<std::string> failed;  // "<dir>: why", newest first
  for (const auto& [step, dir] : CommittedStepDirs(root)) {
    try {
      return ReadCommittedCheckpoint(dir);
    } catch (const Error& e) {
      // Kept aside, never loaded or pruned again: an older checkpoint may still serve.
      const std::string aside = SetAsideCorrupt(dir);
      log << who << ": warning: skipping checkpoint '" << dir << "': " << e.what()
          << "; it failed verification and is kept as '" << aside << "'" << std::endl;
      failed.push_back("'" + dir + "': " + e.what());
    }
  }
  const std::vector<std::string> aside = CorruptStepDirs(root);
  if (aside.empty()) return std::nullopt;
  std::ostringstream why;
  for (const std::string& f : failed) why << "\n  " << f;
  if (failed.empty())
    for (const std::string& d : aside) why << "\n  '" << d << "' (set aside earlier)";
  SM_CHECK(false) << "--resume: every committed checkpoint in '" << root
                  << "' failed verification, so there is nothing to resume from:" << why.str()
                  << "\nThey are kept as step-N.corrupt. Copy an intact checkpoint back, or start "
                     "a new run in another checkpoint.dir (without --resume).";
  return std::nullopt;
}

std::string SetAsideCorrupt(const std::string& dir) {
  std::string aside = dir + ".corrupt";
  for (int k = 1; fs::exists(aside); ++k) aside = dir + ".corrupt." + std::to_string(k);
  fs::rename(dir, aside);
  return aside;
}

std::vector<std::string> CorruptStepDirs(const std::string& root) {
  std::vector<std::string> out;
  if (!fs::exists(root)) return out;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    const size_t dot = name.find(".corrupt");
    if (entry.is_directory() && dot != std::string::npos && StepOfDirName(name.substr(0, dot)) >= 0)
      out.push_back(entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t BumpGeneration(const std::string& path) {
  uint64_t last = 0;
  if (fs::exists(path)) {
    std::string text = ReadFileText(path);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    SM_CHECK(!text.empty() && text.size() <= 19 &&
             std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        << "'" << path << "' must hold one decimal generation number, got \"" << text << "\"";
    last = std::stoull(text);
  }
  const std::string text = std::to_string(last + 1) + "\n";
  WriteFileAtomically(path, text.data(), text.size());
  return last + 1;
}

}  // namespace seqmesh::launch
