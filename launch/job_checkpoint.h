// A distributed job's checkpoints as the coordinator commits and reads them (docs/COORDINATOR.md):
// every rank writes its files into <checkpoint.dir>/step-N (launch/dist_checkpoint.h), the
// coordinator checks each part's files (size and FNV-1a 64), then writes coordinator.json and the
// manifest (runtime/manifest.h), last. The step-directory and manifest rules are
// runtime/manifest.h's; this file adds the job's own: coordinator.json and the parts.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "proto/coordinator.pb.h"
#include "runtime/batch_sampler.h"
#include "runtime/run_config.h"

namespace seqmesh::launch {

inline constexpr char kCoordinatorJson[] = "coordinator.json";

// Where the checkpoints of a job live: <checkpoint.dir> itself (the workers write their parts
// there; the single-process trainer keeps its own in <checkpoint.dir>/checkpoints).
std::string CheckpointRoot(const RunConfig& config);
// <root>/step-%08d: the checkpoint after `step` steps.
std::string CheckpointStepDir(const RunConfig& config, uint64_t step);

// A committed checkpoint as the coordinator reads it back (coordinator.json, after the manifest
// was verified).
struct CommittedCheckpoint {
  std::string dir;  // absolute
  uint64_t step = 0;
  BlendCursor cursor;
  uint64_t generation = 0;
  int world_size = 0;
  std::string job_id;
};
// Verifies `dir`'s manifest.json (every file present with its size and checksum) and parses its
// coordinator.json; throws seqmesh::Error naming the file at fault.
CommittedCheckpoint ReadCommittedCheckpoint(const std::string& dir);

// Why `name` cannot be a file of a rank's part ("" when it can): runtime's CheckFileName, and
// not coordinator.json.
std::string CheckPartFileName(const std::string& name);
// Why `dir`/f is not the file the part describes ("" when it is): a regular file of f.bytes()
// bytes whose FNV-1a 64 is f.fnv1a64().
std::string CheckPartFile(const std::string& dir, const proto::FileDigest& f);

// What the coordinator commits: the job's identity, the cursor after the step, every rank's
// files (parts[r] for rank r).
struct JobCommit {
  uint64_t step = 0;
  BlendCursor cursor;
  uint64_t generation = 0;
  std::string job_id;
  std::vector<std::vector<proto::FileDigest>> parts;
};
// Writes coordinator.json, then the manifest (last: from then on the step is committed); returns
// the checkpoint's bytes.
uint64_t WriteJobCommit(const std::string& dir, const JobCommit& commit);
// After the commit of `step`: removes committed checkpoints older than the newest `keep`, and
// step directories without a manifest older than `step` for which `assembling` is false.
void PruneJobCheckpoints(const std::string& root, int64_t keep, uint64_t step,
                         const std::function<bool(uint64_t)>& assembling);

// The digests of `dir`/name for each name: what a rank's part reports (size and FNV-1a 64).
std::vector<proto::FileDigest> DigestFiles(const std::string& dir,
                                           const std::vector<std::string>& names);

// The newest committed checkpoint under `root` that verifies, for --resume. One that fails
// verification is set aside (SetAsideCorrupt) with a warning on `log` ("<who>: warning: skipping
// checkpoint ..."), and the next older one is tried. None at all: nullopt. None left but some
// were set aside (now or by an earlier attempt): an error listing each with why, never a silent
// fresh start over corrupt checkpoints.
std::optional<CommittedCheckpoint> NewestUsableCheckpoint(const std::string& root,
                                                          std::ostream& log,
                                                          const std::string& who);

// Renames a checkpoint that failed verification to <dir>.corrupt (or .corrupt.1, ...): no longer
// a step directory, so it is never loaded or pruned again. Returns the new name.
std::string SetAsideCorrupt(const std::string& dir);
// The step directories set aside under `root` (step-N.corrupt...), sorted.
std::vector<std::string> CorruptStepDirs(const std::string& root);

// The generation counter in `path`: one more than the last coordinator's, written back, so
// requests of an earlier attempt of the job are told apart from the current one's.
uint64_t BumpGeneration(const std::string& path);

}  // namespace seqmesh::launch
