// The coordinator's checkpoint commits (launch/coordinator.h): restoring the newest committed
// checkpoint, collecting every rank's part, committing the manifest once all are in, pruning,
// and the refit cost file left beside the checkpoints.
#include <algorithm>
#include <filesystem>
#include <ostream>
#include <sstream>

#include "launch/coordinator.h"
#include "launch/coordinator_requests.h"
#include "launch/machine.h"
#include "launch/step_metrics.h"
#include "runtime/check.h"
#include "runtime/files.h"
#include "runtime/manifest.h"

namespace seqmesh::launch {

namespace fs = std::filesystem;

void Coordinator::RestoreNewestCheckpoint(BlendCursor& cursor) {
  const std::string root = CheckpointRoot(config_);
  const std::optional<CommittedCheckpoint> cp = NewestUsableCheckpoint(root, out_, "coordinator");
  if (!cp) {
    out_ << "coordinator: --resume: no committed checkpoint in '" << root << "'; starting at step 0"
         << std::endl;
    return;
  }
  SM_CHECK(cp->cursor.datasets.size() == data_.datasets.size())
      << "checkpoint '" << cp->dir << "' has a data cursor over " << cp->cursor.datasets.size()
      << " dataset(s), but data.path names " << data_.datasets.size()
      << " (was the blend changed?)";
  start_step_ = cp->step;
  committed_ = cp->step;
  cursor = cp->cursor;
  resume_checkpoint_ = cp->dir;
  out_ << "coordinator: resuming from " << cp->dir << " (step " << cp->step << ", written by "
       << cp->world_size << " ranks in generation " << cp->generation << ")" << std::endl;
}

// The cost file with what this job measured, next to its checkpoints: later jobs and
// `seqmesh simulate` can start from it (docs/PLANNER.md, "Online refit"). A failure to write it
// is a warning: the job does not depend on it.
void Coordinator::WriteRefitCostFile(uint64_t step) {
  scheduler::CostModel fitted = planner_->Refitted();
  // Measured on this job's machine, whatever machine the cost file came from.
  fitted.machine = ThisMachine(static_cast<int>(config_.training.threads), options_.world_size);
  std::ostringstream text;
  text << "# Refit by the seqmesh coordinator (job " << options_.job_id << ", generation "
       << generation_ << ") after step " << step + 1 << " of " << Name(config_.distributed.planner)
       << " plans on " << options_.world_size << " ranks, from "
       << (config_.distributed.cost.empty() ? std::string("the built-in model")
                                            : "'" + config_.distributed.cost + "'")
       << ".\n# scale_<D>: measured / estimated time of this job's items on rings of D "
          "(median over the last 64);\n# step_fixed_ms: the median time beside the passes.\n"
       << scheduler::FormatCostModel(fitted);
  const std::string path = CheckpointRoot(config_) + "/refit.cost";
  const std::string body = text.str();
  try {
    WriteFileAtomically(path, body.data(), body.size());
  } catch (const std::exception& e) {
    out_ << "coordinator: warning: cannot write " << path << ": " << e.what() << std::endl;
  }
}

grpc::Status Coordinator::CommitCheckpoint(const proto::CheckpointPart& request,
                                           proto::CommitReply* reply) {
  const int rank = request.rank();
  const uint64_t step = request.step();
  // Fields first, without the lock.
  if (grpc::Status s = CheckPartFields(request); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (grpc::Status s = CheckCaller(rank, request.generation(), "CommitCheckpoint"); !s.ok())
      return s;
    if (!pending_.count(step))
      return Invalid("CommitCheckpoint: step: " + std::to_string(step) +
                     " is not a checkpoint awaiting parts (committed up to step " +
                     std::to_string(committed_) + ")");
    Touch(rank, step);
  }
  // The files themselves, outside the lock (reading them takes time): each must be a regular
  // file of the stated size and checksum inside the step directory.
  const std::string dir = CheckpointStepDir(config_, step);
  for (int i = 0; i < request.files_size(); ++i)
    if (const std::string why = CheckPartFile(dir, request.files(i)); !why.empty())
      return Invalid("CommitCheckpoint: files[" + std::to_string(i) + "]" + why);

  std::lock_guard<std::mutex> lock(mu_);
  // The job may have moved on while the files were read.
  if (grpc::Status s = CheckCaller(rank, request.generation(), "CommitCheckpoint"); !s.ok())
    return s;
  auto it = pending_.find(step);
  if (it == pending_.end())
    return Invalid("CommitCheckpoint: step: " + std::to_string(step) +
                   " is not a checkpoint awaiting parts");
  PendingCheckpoint& pending = it->second;
  for (int r = 0; r < options_.world_size; ++r) {
    if (r == rank || !pending.parts[r]) continue;
    for (const proto::FileDigest& theirs : *pending.parts[r])
      for (int i = 0; i < request.files_size(); ++i)
        if (request.files(i).name() == theirs.name())
          return Invalid("CommitCheckpoint: files[" + std::to_string(i) + "].name: '" +
                         theirs.name() + "' is also in rank " + std::to_string(r) + "'s part");
  }
  // A part sent again (a retry) replaces the earlier one.
  if (!pending.parts[rank]) ++pending.received;
  pending.parts[rank] =
      std::vector<proto::FileDigest>(request.files().begin(), request.files().end());
  Touch(rank, step);
  if (step == total_steps_) ranks_[rank].done = true;  // its work is over: no longer watched
  if (pending.received < options_.world_size) {
    reply->set_committed(false);
    return grpc::Status::OK;
  }
  try {
    WriteCommit(step, pending);
  } catch (const std::exception& e) {
    JobFailure f;
    f.message = "cannot commit the checkpoint of step " + std::to_string(step) + ": " + e.what();
    const std::string message = f.message;
    Fail(std::move(f));
    return grpc::Status(grpc::StatusCode::INTERNAL, message);
  }
  pending_.erase(it);
  committed_ = std::max(committed_, step);
  if (step == total_steps_) final_committed_ = true;
  reply->set_committed(true);
  changed_.notify_all();
  return grpc::Status::OK;
}

void Coordinator::WriteCommit(uint64_t step, const PendingCheckpoint& pending) {
  const std::string dir = CheckpointStepDir(config_, step);
  JobCommit commit;
  commit.step = step;
  commit.cursor = pending.cursor;
  commit.generation = generation_;
  commit.job_id = options_.job_id;
  for (const auto& part : pending.parts) commit.parts.push_back(*part);
  const uint64_t bytes = WriteJobCommit(dir, commit);
  if (options_.progress) out_ << "\r\033[K";  // over the progress bar
  out_ << "checkpoint: " << dir << " (" << options_.world_size << " parts, "
       << Bytes(static_cast<double>(bytes)) << ")" << std::endl;
  // Only now may old checkpoints go: the newest `keep` committed ones stay, and the leftovers of
  // earlier attempts (step directories without a manifest, older than this one and not being
  // assembled) are removed.
  PruneJobCheckpoints(CheckpointRoot(config_), config_.checkpoint.keep, step,
                      [this](uint64_t s) { return pending_.count(s) > 0; });
}

}  // namespace seqmesh::launch
