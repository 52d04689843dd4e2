#include "launch/coordinator.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "launch/activation_offload_setup.h"
#include "launch/coordinator_requests.h"
#include "launch/format.h"
#include "launch/metrics_file.h"
#include "launch/run_dir.h"
#include "launch/step_metrics.h"
#include "runtime/check.h"
#include "runtime/checkpoint.h"
#include "runtime/files.h"
#include "runtime/json.h"
#include "runtime/manifest.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Coordinator

Coordinator::Coordinator(RunConfig config, CoordinatorOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      out_(options_.out ? *options_.out : std::cout),
      data_(OpenTrainingData(config_)) {
  config_.Validate();
  const int n = options_.world_size;
  SM_CHECK(n >= 1) << "the world size must be >= 1, got " << n;
  SM_CHECK(!options_.token.empty()) << "the job token is empty";
  total_steps_ = static_cast<uint64_t>(config_.training.steps);
  metrics_path_ = config_.metrics_path();
  if (options_.resume)
    CheckResumedConfig(config_, out_, "coordinator");
  else
    PrepareFreshRun(config_, options_.overwrite, out_, "coordinator");
  fs::create_directories(CheckpointRoot(config_));
  generation_ = BumpGeneration(config_.checkpoint.dir + "/generation");
  {
    const std::string resolved = config_.ToToml();
    const std::string path = config_.checkpoint.dir + "/config.toml";
    WriteFileAtomically(path, resolved.data(), resolved.size());
  }
  BlendCursor cursor = data_.sampler.Start();
  if (options_.resume) RestoreNewestCheckpoint(cursor);
  start_step_ = std::min(start_step_, total_steps_);
  completed_ = start_step_;
  // Steps after the one resumed from are redone: their earlier records are superseded.
  if (const int64_t n = SupersedeRecordsAfter(metrics_path_, start_step_))
    out_ << "coordinator: " << n << " record(s) of steps after " << start_step_ << " moved to '"
         << metrics_path_ << ".superseded' (those steps are redone)" << std::endl;
  if (config_.metrics.tensorboard) events_.emplace(config_.tensorboard_dir());
  {
    const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
    peak_.emplace(static_cast<int>(
        std::min<int64_t>(cores, int64_t{options_.world_size} * config_.training.threads)));
  }
  scheduler::CostModel cost = scheduler::PlannerCostModel(config_);
  PrepareOffloadCost(config_, cost, out_);
  planner_.emplace(std::move(cost), scheduler::StepPlannerOptions::FromConfig(config_, n),
                   data_.sampler, data_.prefixes, start_step_, std::move(cursor),
                   data_.trained_targets);
  final_committed_ = start_step_ >= total_steps_;
  ranks_.resize(n);
  watchdog_ = std::thread([this] { WatchdogLoop(); });
}

Coordinator::~Coordinator() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  changed_.notify_all();
  watchdog_.join();
}

void Coordinator::WatchdogLoop() {
  // A few checks per timeout: a dead rank is found within 1.25 timeouts.
  const double period_s = std::clamp(config_.distributed.heartbeat_timeout_s / 4, 0.01, 1.0);
  const auto period =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(period_s));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    changed_.wait_for(lock, period, [this] { return stop_; });
    if (stop_) return;
    lock.unlock();
    CheckLiveness();
    lock.lock();
  }
}

void Coordinator::CheckLiveness() {
  std::lock_guard<std::mutex> lock(mu_);
  if (failure_ || FinishedLocked()) return;
  const auto now = Clock::now();
  const double timeout = config_.distributed.heartbeat_timeout_s;
  // A rank that never registers while its peers did (it hung or died before its first RPC).
  if (first_registered_) {
    const double waited = std::chrono::duration<double>(now - *first_registered_).count();
    for (int r = 0; r < options_.world_size && waited > timeout; ++r) {
      if (ranks_[r].registered) continue;
      ranks_[r].dead = true;
      JobFailure f;
      f.kind = JobFailure::Kind::kDeadRank;
      f.rank = r;
      f.last_step = start_step_;
      f.silent_s = waited;
      f.message =
          "rank " + std::to_string(r) + " never registered: " + Fixed(waited, 1) +
          " s after the first rank did (distributed.heartbeat_timeout_s = " + Fixed(timeout, 1) +
          ")";
      Fail(std::move(f));
      return;
    }
  }
  for (int r = 0; r < options_.world_size; ++r) {
    RankState& s = ranks_[r];
    if (!s.registered || s.dead || s.done) continue;
    const double silent = std::chrono::duration<double>(now - s.last_seen).count();
    if (silent <= timeout) continue;
    s.dead = true;
    JobFailure f;
    f.kind = JobFailure::Kind::kDeadRank;
    f.rank = r;
    f.pid = s.pid;
    f.host = s.host;
    f.last_step = s.last_step;
    f.silent_s = silent;
    f.message = "rank " + std::to_string(r) + " (pid " + std::to_string(s.pid) + " on host " +
                s.host + ") declared dead after " + Fixed(silent, 1) +
                " s without a heartbeat at step " + std::to_string(s.last_step);
    Fail(std::move(f));
    return;  // the first death is the root cause; the job stops here
  }
}

void Coordinator::Fail(JobFailure failure) {
  if (failure_) return;  // the first failure is the root cause
  failure_ = std::move(failure);
  changed_.notify_all();
}

// Every rank has registered too: a job restarted after its last checkpoint was committed (a
// worker killed while the others were leaving) has nothing to run, but its workers must still
// learn that from Register, so the coordinator waits for them before it finishes.
bool Coordinator::FinishedLocked() const {
  return final_committed_ && completed_ >= total_steps_ &&
         std::all_of(ranks_.begin(), ranks_.end(), [](const RankState& r) { return r.registered; });
}

bool Coordinator::Finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return FinishedLocked();
}

std::optional<JobFailure> Coordinator::Failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

std::optional<JobFailure> Coordinator::FailedRank() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (failure_ && failure_->kind == JobFailure::Kind::kDeadRank) return failure_;
  return std::nullopt;
}

bool Coordinator::WaitForOutcome(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, timeout, [this] { return failure_ || FinishedLocked(); });
}

uint64_t Coordinator::completed_steps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_;
}

uint64_t Coordinator::committed_step() const {
  std::lock_guard<std::mutex> lock(mu_);
  return committed_;
}

grpc::Status Coordinator::CheckCaller(int rank, uint64_t generation, const char* rpc) {
  if (rank < 0 || rank >= options_.world_size)
    return Invalid(std::string(rpc) + ": rank: " + std::to_string(rank) + " is not in [0, " +
                   std::to_string(options_.world_size) + ")");
  if (generation != generation_)
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        std::string(rpc) + ": generation: " + std::to_string(generation) +
                            " is not the job's generation " + std::to_string(generation_) +
                            " (a worker of another attempt of the job)");
  if (!ranks_[rank].registered)
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        std::string(rpc) + ": rank " + std::to_string(rank) +
                            " has not registered in generation " + std::to_string(generation_));
  if (failure_)
    return grpc::Status(grpc::StatusCode::ABORTED, "the job is failing: " + failure_->message);
  // Any call from a known rank is a sign of life, a refused one included.
  ranks_[rank].last_seen = Clock::now();
  return grpc::Status::OK;
}

void Coordinator::Touch(int rank, uint64_t step) {
  RankState& s = ranks_[rank];
  s.last_seen = Clock::now();
  s.last_step = std::max(s.last_step, step);
}

grpc::Status Coordinator::Register(const proto::RegisterRequest& request,
                                   proto::RegisterReply* reply) {
  const int n = options_.world_size;
  if (grpc::Status s = CheckRegisterFields(request, n); !s.ok()) return s;
  const std::string& host = request.hostname();
  std::lock_guard<std::mutex> lock(mu_);
  if (failure_)
    return grpc::Status(grpc::StatusCode::ABORTED, "the job is failing: " + failure_->message);
  RankState& s = ranks_[request.rank()];
  if (s.registered && (s.pid != request.pid() || s.host != host))
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                        "Register: rank " + std::to_string(request.rank()) +
                            " is already registered by pid " + std::to_string(s.pid) + " on host " +
                            s.host + " in generation " + std::to_string(generation_));
  const bool first = !s.registered;
  s.registered = true;
  if (!first_registered_) first_registered_ = Clock::now();
  s.pid = request.pid();
  s.host = host;
  s.last_step = start_step_;
  Touch(request.rank(), start_step_);
  if (first &&
      std::all_of(ranks_.begin(), ranks_.end(), [](const RankState& r) { return r.registered; }))
    out_ << "coordinator: all " << n << " ranks registered (generation " << generation_
         << "); training steps " << start_step_ + 1 << ".." << total_steps_ << " (a line every "
         << config_.training.log_interval << "; the first step may take a while)" << std::endl;
  reply->set_job_id(options_.job_id);
  reply->set_generation(generation_);
  reply->set_config_toml(config_.ToToml());
  reply->set_start_step(start_step_);
  reply->set_resume_checkpoint(resume_checkpoint_);
  if (resume_checkpoint_.empty()) reply->set_init_from(options_.init_from);
  reply->set_total_steps(total_steps_);
  return grpc::Status::OK;
}

grpc::Status Coordinator::GetPlan(const proto::PlanRequest& request, proto::PlanReply* reply) {
  std::lock_guard<std::mutex> lock(mu_);
  if (grpc::Status s = CheckCaller(request.rank(), request.generation(), "GetPlan"); !s.ok())
    return s;
  const uint64_t step = request.step();
  if (step >= total_steps_)
    return Invalid("GetPlan: step: " + std::to_string(step) + " is past the run's last step " +
                   std::to_string(total_steps_ - 1));
  if (step < completed_ || step > completed_ + 1)
    return Invalid("GetPlan: step: " + std::to_string(step) + " is outside the window [" +
                   std::to_string(completed_) + ", " + std::to_string(completed_ + 1) +
                   "] of steps being served");
  Touch(request.rank(), step);
  try {
    PlanThrough(step);
  } catch (const std::exception& e) {
    JobFailure f;
    f.kind = JobFailure::Kind::kInternal;
    f.message = "cannot plan step " + std::to_string(step) + ": " + e.what();
    const std::string message = f.message;
    Fail(std::move(f));
    return grpc::Status(grpc::StatusCode::INTERNAL, message);
  }
  *reply = steps_.at(step).reply;
  return grpc::Status::OK;
}

uint64_t Coordinator::RequestStop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stop_requested_ && !failure_) {
    stop_requested_ = true;
    // Steps planned already may be running on some rank: the first unplanned one is the last.
    total_steps_ = std::min(total_steps_, std::max(planner_->next_step(), completed_) + 1);
    // A step already planned as the last keeps its reply; one planned past the new end cannot
    // exist (it would have been asked for).
  }
  changed_.notify_all();
  return total_steps_;
}

bool Coordinator::stop_requested() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_requested_;
}

void Coordinator::PlanThrough(uint64_t step) {
  while (planner_->next_step() <= step) {
    StepRecord record;
    record.planned = planner_->Next();
    const uint64_t k = record.planned.step;
    proto::PlanReply& reply = record.reply;
    *reply.mutable_plan() = record.planned.plan;
    for (size_t i = 0; i < record.planned.batch.size(); ++i) {
      proto::BatchSequence* b = reply.add_batch();
      b->set_dataset(static_cast<uint32_t>(record.planned.batch[i].dataset));
      b->set_sequence(static_cast<uint64_t>(record.planned.batch[i].sequence));
      b->set_length(static_cast<uint64_t>(record.planned.lengths[i]));
    }
    reply.set_target_tokens(record.planned.target_tokens);
    const int64_t interval = config_.checkpoint.interval;
    reply.set_checkpoint_after((interval > 0 && (k + 1) % interval == 0) || k + 1 == total_steps_);
    reply.set_last_step(stop_requested_ && k + 1 == total_steps_);
    record.reports.resize(options_.world_size);
    if (reply.checkpoint_after()) {
      PendingCheckpoint pending;
      pending.cursor = record.planned.cursor_after;
      pending.parts.resize(options_.world_size);
      pending_[k + 1] = std::move(pending);
      // A manifest left there by an earlier attempt would claim the step is committed while
      // the workers rewrite its files: the step is committed again only by its new manifest.
      fs::remove(CheckpointStepDir(config_, k + 1) + "/" + kManifestName);
    }
    steps_[k] = std::move(record);
  }
}

grpc::Status Coordinator::Heartbeat(const proto::HeartbeatRequest& request,
                                    proto::HeartbeatReply* reply) {
  std::lock_guard<std::mutex> lock(mu_);
  grpc::Status s = CheckCaller(request.rank(), request.generation(), "Heartbeat");
  if (s.error_code() == grpc::StatusCode::ABORTED) {
    // Workers learn of a failure here: they stop, and the launcher restarts the job.
    reply->set_abort(true);
    reply->set_reason(failure_->message);
    return grpc::Status::OK;
  }
  if (!s.ok()) return s;
  if (request.step() > total_steps_)
    return Invalid("Heartbeat: step: " + std::to_string(request.step()) +
                   " is past the run's steps (" + std::to_string(total_steps_) + ")");
  Touch(request.rank(), request.step());
  return grpc::Status::OK;
}

grpc::Status Coordinator::ReportMetrics(const proto::MetricsReport& request,
                                        proto::MetricsReply* reply) {
  std::lock_guard<std::mutex> lock(mu_);
  if (grpc::Status s = CheckCaller(request.rank(), request.generation(), "ReportMetrics"); !s.ok())
    return s;
  const uint64_t step = request.step();
  auto it = steps_.find(step);
  if (step < completed_ || step > completed_ + 1 || it == steps_.end())
    return Invalid("ReportMetrics: step: " + std::to_string(step) +
                   " is not a step being served (window [" + std::to_string(completed_) + ", " +
                   std::to_string(completed_ + 1) + "], plans drawn up to step " +
                   std::to_string(planner_->next_step()) + ")");
  StepRecord& record = it->second;
  const int rank = request.rank();
  if (record.reports[rank])
    return Invalid("ReportMetrics: step: rank " + std::to_string(rank) + " already reported step " +
                   std::to_string(step));
  if (grpc::Status s = CheckMetricsFields(request, record.planned.tokens,
                                          record.reply.plan().ranks(rank).micro_batches_size());
      !s.ok())
    return s;
  record.reports[rank] = request;
  ++record.reported;
  Touch(rank, step);
  // Steps complete in order; a step is logged once every rank has reported it.
  for (auto next = steps_.find(completed_);
       next != steps_.end() && next->second.reported == options_.world_size;
       next = steps_.find(completed_)) {
    FinishStep(completed_, next->second);
    steps_.erase(next);
    ++completed_;
  }
  changed_.notify_all();
  return grpc::Status::OK;
}

void Coordinator::FinishStep(uint64_t step, StepRecord& record) {
  const StepTotals totals = TotalOf(record.reports);
  // The online refit learns from this step: every item's measured time against the cost
  // file's estimate, and the time beside the passes (the slowest rank's step less the slowest
  // rank's passes).
  if (config_.distributed.refit != RefitMode::kOff) {
    std::vector<std::vector<std::optional<scheduler::MicroBatchTime>>> times(record.reports.size());
    for (size_t r = 0; r < record.reports.size(); ++r) {
      times[r].resize(record.reply.plan().ranks(static_cast<int>(r)).micro_batches_size());
      for (const proto::MicroBatchTiming& t : record.reports[r]->micro_batch_times())
        times[r][t.micro_batch()] = scheduler::MicroBatchTime{t.start_ms(), t.end_ms()};
    }
    planner_->Learn(record.planned, times, totals.step_ms - totals.compute_ms);
    if (record.reply.checkpoint_after()) WriteRefitCostFile(step);
  }
  Json line = StepRecordJson(step, totals, record.reports, record.planned, planner_->RefitScales(),
                             generation_);
  if (totals.step_ms > 0 && peak_) {
    std::set<std::string> hosts;
    for (const RankState& r : ranks_) hosts.insert(r.host);
    const double gflops =
        StepModelFlops(config_.model, record.planned.plan, record.planned.tokens, config_.lora) /
        totals.step_ms / 1e6;
    line.Set("mfu", Json::Number(peak_->Mfu(gflops / std::max<size_t>(1, hosts.size()))));
  }
  const double norm = record.reports[0]->grad_norm();
  bool stop = false;
  try {
    if (nonfinite_.Check(step + 1, totals.loss, norm)) line.Set("skipped", Json::Bool(true));
  } catch (const Error& e) {
    line.Set("skipped", Json::Bool(true));
    JobFailure f;
    f.message = e.what();
    Fail(std::move(f));
    stop = true;
  }
  {
    std::ofstream metrics(metrics_path_, std::ios::app);
    metrics << line.Dump() << "\n";
    if (!metrics.good()) {
      JobFailure f;
      f.message = "cannot append to the metrics file '" + metrics_path_ + "'";
      Fail(std::move(f));
    }
  }
  if (events_) {
    try {
      events_->WriteScalars(static_cast<int64_t>(step + 1), ScalarsOf(line));
    } catch (const Error& e) {
      JobFailure f;
      f.message = e.what();
      Fail(std::move(f));
    }
  }
  if (stop) return;
  interval_tokens_ += record.planned.tokens;
  interval_ms_ += totals.step_ms;
  const uint64_t done = step + 1;
  // A line every log_interval steps and at the last; a terminal gets a bar after every other step.
  if (done % static_cast<uint64_t>(config_.training.log_interval) == 0 || done == total_steps_) {
    const double rate = interval_ms_ > 0 ? interval_tokens_ / (interval_ms_ / 1e3) : 0.0;
    if (options_.progress) out_ << "\r\033[K";
    out_ << ConsoleStepLine(done, totals, *record.reports[0], rate) << std::endl;
    interval_tokens_ = 0;
    interval_ms_ = 0;
  } else if (options_.progress) {
    const int width = 30;
    const int filled = static_cast<int>(width * done / std::max<uint64_t>(1, total_steps_));
    out_ << "\r[" << std::string(filled, '=') << std::string(width - filled, ' ') << "] " << done
         << "/" << total_steps_ << std::flush;
  }
}

}  // namespace seqmesh::launch
