// The checkpoint manifest: the rules every checkpoint path follows, in one place (every command
// writes and reads its checkpoints through launch/job_checkpoint.h, which calls these).
//
//   <root>/step-00000042/      the checkpoint after 42 steps (StepDir)
//     ...                      its files, each written atomically
//     manifest.json            written last and atomically: {"step": 42, "files": [{"name",
//                              "bytes", "fnv1a64" (decimal)}, ...], plus the writer's own keys}
//
// A step directory without a manifest is incomplete and never loaded; a manifest is the whole
// truth of its checkpoint: every file it lists must be present with its size and checksum.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/json.h"

namespace seqmesh {

inline constexpr char kManifestName[] = "manifest.json";

// "step-00000042"
std::string StepDirName(uint64_t step);
// <root>/step-00000042
std::string StepDir(const std::string& root, uint64_t step);
// The step of a directory name "step-<digits>", or -1 for any other name.
int64_t StepOfDirName(const std::string& name);

struct ManifestFile {
  std::string name;  // relative to the step directory
  uint64_t bytes = 0;
  uint64_t fnv1a64 = 0;
  int rank = -1;  // the rank that wrote it, when several did (-1: not recorded)
};

// The entry of `dir`/`name` as it is on disk now.
ManifestFile DigestFile(const std::string& dir, const std::string& name);

// Why `name` cannot be a file of a checkpoint ("" when it can): it must be relative to the step
// directory and stay inside it (components separated by '/', none empty, "." or ".."), have no
// control character or backslash, be at most 255 bytes, and not be the manifest itself.
std::string CheckFileName(const std::string& name);

// Writes <dir>/manifest.json last and atomically: `step`, the keys of `extra` (a JSON object)
// and `files`. From then on the checkpoint is committed.
void WriteManifest(const std::string& dir, uint64_t step, const std::vector<ManifestFile>& files,
                   const Json& extra = Json::Object());

// Verifies <dir>/manifest.json: every listed file has a valid name, exists, and has its size and
// checksum. Returns the parsed manifest. Errors name the file at fault.
Json VerifyManifest(const std::string& dir);

// The names of the files <dir>/manifest.json lists (read, not verified: VerifyManifest first).
// Readers load only these: a step directory may also hold leftovers of an attempt that never
// committed it.
std::vector<std::string> ManifestFileNames(const std::string& dir);

// Step directories under `root` that have a manifest (committed), newest first.
std::vector<std::pair<uint64_t, std::string>> CommittedStepDirs(const std::string& root);

}  // namespace seqmesh
