// The coordinator of a multi-process job (DESIGN.md section 3; protocol in docs/COORDINATOR.md).
//
// Coordinator is the job's state machine, plain C++ and thread-safe (one mutex), so it is tested
// without a network: it draws each step's global batch from the dataset lengths, plans and
// validates it, serves the plan, aggregates metrics into the console and metrics.jsonl, watches
// heartbeats, and commits checkpoint manifests once every rank's part is in. CoordinatorServer
// puts it behind gRPC (proto/coordinator.proto) with the job token, message limits and optional
// TLS; workers talk to it with CoordinatorClient (launch/coordinator_client.h).
//
// Invariants:
//   - plans exist only for the window [first unfinished step, that + 1]: gradient sync is a
//     collective, so no rank is more than one step ahead of the slowest (a worker reports a
//     step's metrics before it asks for the next plan);
//   - a plan is drawn once, in step order, from the sampler cursor; the cursor after step k is
//     what a checkpoint after step k stores, so a resumed job draws the same batches;
//   - a checkpoint step is committed only by its manifest.json, written last and atomically
//     after every rank's files were checked (size and FNV-1a 64) and coordinator.json written;
//   - every request names the current generation; other generations are refused.
#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "launch/job_checkpoint.h"
#include "launch/job_token.h"
#include "launch/machine_peak.h"
#include "launch/nonfinite.h"
#include "launch/tensorboard.h"
#include "launch/training_data.h"
#include "proto/coordinator.pb.h"
#include "runtime/batch_sampler.h"
#include "runtime/run_config.h"
#include "scheduler/cost_model.h"
#include "scheduler/plan.h"
#include "scheduler/refit.h"
#include "scheduler/step_planner.h"

namespace grpc {
class Server;
}

namespace seqmesh::launch {

struct CoordinatorOptions {
  int world_size = 0;
  std::string token;  // the job token every RPC must carry
  std::string job_id;
  bool resume = false;     // continue from the newest valid committed checkpoint, if there is one
  bool overwrite = false;  // a fresh run in a used checkpoint.dir: move the earlier run aside
  // A Hugging Face directory the workers start from when there is no checkpoint to resume (the
  // config's [model] must already be its config.json's: RunCoordinator reads it).
  std::string init_from;
  std::ostream* out = nullptr;  // console lines; nullptr: std::cout
  // A terminal: a progress bar between log lines, redrawn after every step (as train's).
  bool progress = false;
};

// Why a job failed: a rank declared dead, or an internal error (an invalid plan, a batch that
// cannot be placed). The command exits non-zero with `message` as its root-cause line.
struct JobFailure {
  enum class Kind { kDeadRank, kInternal };
  Kind kind = Kind::kInternal;
  int rank = -1;  // kDeadRank only
  int64_t pid = 0;
  std::string host;
  uint64_t last_step = 0;
  double silent_s = 0;  // seconds without any RPC from the rank when it was declared dead
  std::string message;
};

class Coordinator {
 public:
  // Opens the data (lengths only), reads and bumps the generation counter, and with
  // options.resume restores the newest valid committed checkpoint. Starts the heartbeat
  // watchdog. Errors (bad config, unreadable data) throw seqmesh::Error.
  Coordinator(RunConfig config, CoordinatorOptions options);
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The RPCs (proto/coordinator.proto). Each validates every field first and answers
  // INVALID_ARGUMENT naming the field, FAILED_PRECONDITION for another generation, ABORTED once
  // the job has failed (Heartbeat answers abort=true instead), and INTERNAL for a fatal error of
  // the coordinator itself, which also fails the job.
  grpc::Status Register(const proto::RegisterRequest& request, proto::RegisterReply* reply);
  grpc::Status GetPlan(const proto::PlanRequest& request, proto::PlanReply* reply);
  grpc::Status Heartbeat(const proto::HeartbeatRequest& request, proto::HeartbeatReply* reply);
  grpc::Status ReportMetrics(const proto::MetricsReport& request, proto::MetricsReply* reply);
  grpc::Status CommitCheckpoint(const proto::CheckpointPart& request, proto::CommitReply* reply);

  // Declares dead a registered rank silent for longer than heartbeat_timeout_s, or a rank that
  // has not registered heartbeat_timeout_s after the first rank did (the watchdog thread calls
  // it a few times per timeout; tests may call it directly).
  void CheckLiveness();

  // A graceful stop (the first Ctrl-C or SIGTERM): the first step no rank has asked for yet
  // becomes the job's last, with a checkpoint after it (PlanReply.last_step), so every rank
  // finishes the steps it runs, commits, and leaves; --resume continues from there. Returns the
  // step count the job now ends at (total_steps() when every step was planned already).
  uint64_t RequestStop();
  bool stop_requested() const;

  // The last step has been reported by every rank and its checkpoint committed.
  bool Finished() const;
  std::optional<JobFailure> Failure() const;
  // The dead rank, if a rank was declared dead.
  std::optional<JobFailure> FailedRank() const;
  // Waits until Finished() or Failure(), or for `timeout`; returns true if either holds.
  bool WaitForOutcome(std::chrono::milliseconds timeout) const;

  const std::string& token() const { return options_.token; }
  const std::string& job_id() const { return options_.job_id; }
  uint64_t generation() const { return generation_; }
  uint64_t start_step() const { return start_step_; }
  uint64_t total_steps() const { return total_steps_; }
  int world_size() const { return options_.world_size; }
  const std::string& resume_checkpoint() const { return resume_checkpoint_; }
  // Steps whose metrics every rank has reported (start_step() at first).
  uint64_t completed_steps() const;
  // The newest committed checkpoint's step (the resumed one at first; 0: none).
  uint64_t committed_step() const;

 private:
  using Clock = std::chrono::steady_clock;

  struct RankState {
    bool registered = false;
    bool dead = false;
    bool done = false;  // its part of the final checkpoint is in; no longer watched
    int64_t pid = 0;
    std::string host;
    uint64_t last_step = 0;
    Clock::time_point last_seen;
  };
  // One served step: what the planner made of it, the reply served, then the ranks' metrics as
  // they arrive.
  struct StepRecord {
    scheduler::PlannedStep planned;
    proto::PlanReply reply;
    std::vector<std::optional<proto::MetricsReport>> reports;
    int reported = 0;
  };
  // A checkpoint being assembled: the data cursor after its last step, and each rank's files.
  struct PendingCheckpoint {
    BlendCursor cursor;
    std::vector<std::optional<std::vector<proto::FileDigest>>> parts;
    int received = 0;
  };

  // Checks (under mu_) the rank and generation common to every request after Register.
  grpc::Status CheckCaller(int rank, uint64_t generation, const char* rpc);
  void Touch(int rank, uint64_t step);
  // Draws and plans steps up to `step` (under mu_). Throws seqmesh::Error on a fatal error.
  void PlanThrough(uint64_t step);
  void FinishStep(uint64_t step, StepRecord& record);
  void WriteRefitCostFile(uint64_t step);  // <checkpoint.dir>/refit.cost, after `step`
  void WriteCommit(uint64_t step, const PendingCheckpoint& pending);
  void Fail(JobFailure failure);
  bool FinishedLocked() const;
  void RestoreNewestCheckpoint(BlendCursor& cursor);
  void WatchdogLoop();

  RunConfig config_;
  CoordinatorOptions options_;
  std::ostream& out_;
  TrainingData data_;
  uint64_t generation_ = 0;
  uint64_t start_step_ = 0;
  uint64_t total_steps_ = 0;
  std::string resume_checkpoint_;
  std::string metrics_path_;
  std::optional<EventFileWriter> events_;  // metrics.tensorboard; written by FinishStep (under mu_)
  // The MFU denominator of the records: this machine's peak for min(cores, world x threads)
  // compute threads, times the number of hosts the ranks registered from (taken to be alike).
  std::optional<MachinePeak> peak_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  // Draws and plans the steps; its refit learns from the steps reported so far.
  std::optional<scheduler::StepPlanner> planner_;
  uint64_t completed_ = 0;  // steps reported by every rank
  uint64_t committed_ = 0;  // newest committed checkpoint step this run
  bool final_committed_ = false;
  bool stop_requested_ = false;
  NonFiniteGuard nonfinite_{config_.training};  // training.nonfinite over the reported steps
  std::vector<RankState> ranks_;
  std::optional<Clock::time_point> first_registered_;  // when the first rank registered
  std::map<uint64_t, StepRecord> steps_;
  std::map<uint64_t, PendingCheckpoint> pending_;  // by steps completed at the checkpoint
  std::optional<JobFailure> failure_;
  // Since the last console line: global tokens and summed step times (the tok/s printed).
  int64_t interval_tokens_ = 0;
  double interval_ms_ = 0;

  bool stop_ = false;
  std::thread watchdog_;
};

struct ServerOptions {
  std::string address = "127.0.0.1";  // an explicit interface, loopback unless told otherwise
  int port = 0;                       // 0: any free port (see CoordinatorServer::port())
  // TLS: both PEM files, or neither (insecure; then keep to loopback).
  std::string tls_cert_file;
  std::string tls_key_file;
  // Mutual TLS: PEM of the CA that signs the workers' certificates. Set, the server requires
  // every client to present a certificate that this CA signed (needs tls_cert/key_file).
  std::string tls_client_ca_file;
  int max_receive_bytes = 64 * 1024;      // requests are small; anything bigger is refused
  int max_send_bytes = 64 * 1024 * 1024;  // plans of large batches
};

// The gRPC service over a Coordinator (which must outlive it). Every RPC must carry the job
// token (metadata kTokenMetadataKey, compared in constant time) or gets UNAUTHENTICATED. Serves
// on its own threads from construction until destruction (or Shutdown()).
class CoordinatorServer {
 public:
  CoordinatorServer(Coordinator& coordinator, const ServerOptions& options);
  ~CoordinatorServer();
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  int port() const { return port_; }
  // "address:port" for clients (IPv6 addresses in brackets).
  std::string target() const;
  // Stops accepting calls and waits up to `grace` for the ones in flight.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

 private:
  class Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_ = 0;
};

}  // namespace seqmesh::launch
