#include "launch/coordinator.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "launch/format.h"
#include "runtime/check.h"
#include "runtime/checkpoint.h"
#include "runtime/files.h"
#include "runtime/json.h"
#include "scheduler/plan.h"
#include "scheduler/plan_validator.h"
#include "scheduler/planner.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

constexpr char kManifest[] = "manifest.json";
constexpr char kCoordinatorJson[] = "coordinator.json";
constexpr size_t kMaxHostname = 255;
constexpr size_t kMaxFileName = 255;
constexpr int kMaxFilesPerPart = 1024;

std::string Bytes(double b) {
  if (b < 1024) return Fixed(b, 0) + "B";
  if (b < 1024.0 * 1024) return Fixed(b / 1024, 1) + "KiB";
  if (b < 1024.0 * 1024 * 1024) return Fixed(b / (1024.0 * 1024), 1) + "MiB";
  return Fixed(b / (1024.0 * 1024 * 1024), 2) + "GiB";
}

// JSON cannot hold NaN or infinity (a diverged loss): those are written as null.
Json NumberOrNull(double v) { return std::isfinite(v) ? Json::Number(v) : Json(); }

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

std::string ReadFileText(const std::string& path) {
  MappedFile f(path);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

// The generation counter: one more than the last coordinator's, so requests of an earlier
// attempt of the job are told apart from the current one's.
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

// A file name of a checkpoint part: relative to the step directory and inside it. Components
// are separated by '/', none empty, "." or ".."; no leading '/', no NUL or control characters.
// Returns "" when valid, else why not.
std::string CheckPartFileName(const std::string& name) {
  if (name.empty()) return "is empty";
  if (name.size() > kMaxFileName)
    return "is " + std::to_string(name.size()) + " bytes long (at most " +
           std::to_string(kMaxFileName) + ")";
  if (name.front() == '/') return "starts with '/' (names are relative to the step directory)";
  for (char c : name)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\')
      return "contains a control character or a backslash";
  size_t begin = 0;
  while (begin <= name.size()) {
    size_t end = name.find('/', begin);
    if (end == std::string::npos) end = name.size();
    const std::string part = name.substr(begin, end - begin);
    if (part.empty()) return "has an empty path component";
    if (part == "." || part == "..") return "has a '" + part + "' component";
    begin = end + 1;
  }
  if (name == kManifest || name == kCoordinatorJson)
    return "is reserved for the coordinator's own file";
  return "";
}

bool IsHex16(const std::string& s) {
  return s.size() == 16 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

const Json& Member(const Json& object, const char* key, const std::string& what) {
  const Json* m = object.Find(key);
  SM_CHECK(m != nullptr) << what << " lacks \"" << key << "\"";
  return *m;
}

// Step directories under `root` that have a manifest, newest first.
std::vector<std::pair<uint64_t, std::string>> CommittedDirs(const std::string& root) {
  std::vector<std::pair<uint64_t, std::string>> out;
  if (!fs::exists(root)) return out;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("step-", 0) != 0 || name.size() <= 5) continue;
    const std::string digits = name.substr(5);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    if (!fs::exists(entry.path() / kManifest)) continue;
    out.emplace_back(std::stoull(digits), entry.path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

}  // namespace

std::string CheckpointRoot(const RunConfig& config) { return config.checkpoint.dir; }

std::string CheckpointStepDir(const RunConfig& config, uint64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08llu", static_cast<unsigned long long>(step));
  return CheckpointRoot(config) + "/" + buf;
}

std::string MetricsPath(const RunConfig& config) {
  return config.metrics.jsonl.empty() ? config.checkpoint.dir + "/metrics.jsonl"
                                      : config.metrics.jsonl;
}

scheduler::CostModel PlannerCostModel(const RunConfig& config) {
  if (!config.distributed.cost.empty()) return scheduler::LoadCostModel(config.distributed.cost);
  // The shape of T(s) and Act(s) for this model in fp32 at an assumed 20 GFLOP/s per rank (a
  // couple of cores): b1 from 6 FLOPs per matmul parameter and token (forward + backward), a1
  // from causal attention's 12 * hidden FLOPs per (query, key) pair over s^2 / 2 pairs. Only
  // the ratios matter for balance; `seqmesh profile` measures the real ones.
  const ModelConfig& m = config.model;
  constexpr double kAssumedGflops = 20;
  const double kv = static_cast<double>(m.kv_heads * m.head_dim());
  const double h = static_cast<double>(m.hidden);
  const double layer_params = h * (2 * h + 2 * kv) + 3 * h * static_cast<double>(m.ffn);
  scheduler::CostModel c;
  c.name = "built-in-cpu";
  c.layers_per_rank = static_cast<int>(m.layers);
  c.b1 = 6 * layer_params / (kAssumedGflops * 1e6);
  c.a1 = 6 * h / (kAssumedGflops * 1e6);
  c.g = 0.01;
  // Saved fp32 tensors per token and layer: norms, q, k, v, attention out, the FFN's three.
  c.a2 = 4 * (6 * h + 2 * kv + 3 * static_cast<double>(m.ffn));
  c.b2 = 0;
  // K and V forward, K, V, dK, dV backward, fp32.
  c.kv_bytes_per_token = 6 * kv * 4;
  c.p2p_gbps = 5;  // shared memory between processes of one machine
  c.d2h_gbps = 10;
  c.h2d_gbps = 10;
  return c;
}

CommittedCheckpoint ReadCommittedCheckpoint(const std::string& dir) {
  const std::string manifest_path = dir + "/" + kManifest;
  SM_CHECK(fs::exists(manifest_path)) << "'" << dir << "' has no " << kManifest;
  const Json manifest = Json::Parse(ReadFileText(manifest_path), manifest_path);
  bool has_coordinator_json = false;
  for (const Json& e : Member(manifest, "files", manifest_path).AsArray(manifest_path + " files")) {
    const std::string name = Member(e, "name", manifest_path).AsString(manifest_path + " name");
    const std::string why = name == kCoordinatorJson ? "" : CheckPartFileName(name);
    SM_CHECK(why.empty()) << "'" << manifest_path << "' lists the file name '" << name
                          << "', which " << why;
    has_coordinator_json |= name == kCoordinatorJson;
    const std::string path = dir + "/" + name;
    SM_CHECK(fs::exists(path)) << "checkpoint file '" << path << "' is missing";
    MappedFile f(path);
    const int64_t bytes = Member(e, "bytes", manifest_path).AsInt(manifest_path + " bytes");
    SM_CHECK(static_cast<int64_t>(f.size()) == bytes)
        << "checkpoint file '" << path << "' has " << f.size() << " bytes, the manifest says "
        << bytes << " (truncated?)";
    SM_CHECK(std::to_string(Fnv1a64(f.data(), f.size())) ==
             Member(e, "fnv1a64", manifest_path).AsString(manifest_path + " fnv1a64"))
        << "checkpoint file '" << path << "' does not match its checksum (corrupt)";
  }
  SM_CHECK(has_coordinator_json) << "'" << manifest_path << "' does not list " << kCoordinatorJson;
  const std::string cj_path = dir + "/" + kCoordinatorJson;
  const Json cj = Json::Parse(ReadFileText(cj_path), cj_path);
  CommittedCheckpoint out;
  out.dir = fs::absolute(dir).lexically_normal().string();
  const int64_t step = Member(cj, "step", cj_path).AsInt(cj_path + " step");
  SM_CHECK(step >= 0) << cj_path << ": step " << step << " is negative";
  out.step = static_cast<uint64_t>(step);
  SM_CHECK(Member(manifest, "step", manifest_path).AsInt(manifest_path + " step") == step)
      << "'" << manifest_path << "' and '" << cj_path << "' name different steps";
  out.cursor = CursorFromJson(Member(cj, "cursor", cj_path), cj_path + " cursor");
  out.generation =
      static_cast<uint64_t>(Member(cj, "generation", cj_path).AsInt(cj_path + " generation"));
  out.world_size =
      static_cast<int>(Member(cj, "world_size", cj_path).AsInt(cj_path + " world_size"));
  out.job_id = Member(cj, "job_id", cj_path).AsString(cj_path + " job_id");
  return out;
}

std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

std::string ReadJobToken(const std::string& token_file) {
  std::string token;
  if (!token_file.empty()) {
    SM_CHECK(std::filesystem::exists(token_file))
        << "--token-file '" << token_file << "' does not exist";
    struct stat st;
    if (::stat(token_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      std::cerr << "warning: the job token file '" << token_file
                << "' is readable by other users (chmod 600 it)\n";
    MappedFile f(token_file);
    token.assign(reinterpret_cast<const char*>(f.data()), f.size());
  } else if (const char* env = std::getenv("SEQMESH_JOB_TOKEN")) {
    token = env;
  }
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  SM_CHECK(!token.empty())
      << "no job token: pass --token-file F or set SEQMESH_JOB_TOKEN (the launcher makes one)";
  SM_CHECK(token.size() >= 16) << "the job token has " << token.size()
                               << " characters; use at least 16 random ones";
  return token;
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  // Every byte of the longer string is visited whatever the contents; only the lengths (not
  // secret: tokens have a fixed length) decide the time.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

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
  metrics_path_ = MetricsPath(config_);
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
  planner_.emplace(PlannerCostModel(config_), scheduler::StepPlannerOptions::FromConfig(config_, n),
                   data_.sampler, data_.prefixes, start_step_, std::move(cursor));
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

void Coordinator::RestoreNewestCheckpoint(BlendCursor& cursor) {
  const std::string root = CheckpointRoot(config_);
  for (const auto& [step, dir] : CommittedDirs(root)) {
    CommittedCheckpoint cp;
    try {
      cp = ReadCommittedCheckpoint(dir);
    } catch (const Error& e) {
      // An incomplete or corrupt checkpoint is as good as absent; an older one still serves.
      out_ << "coordinator: warning: skipping checkpoint '" << dir << "': " << e.what()
           << std::endl;
      continue;
    }
    SM_CHECK(cp.cursor.datasets.size() == data_.datasets.size())
        << "checkpoint '" << dir << "' has a data cursor over " << cp.cursor.datasets.size()
        << " dataset(s), but data.path names " << data_.datasets.size()
        << " (was the blend changed?)";
    start_step_ = cp.step;
    committed_ = cp.step;
    cursor = cp.cursor;
    resume_checkpoint_ = cp.dir;
    out_ << "coordinator: resuming from " << cp.dir << " (step " << cp.step << ", written by "
         << cp.world_size << " ranks in generation " << cp.generation << ")" << std::endl;
    return;
  }
  out_ << "coordinator: --resume: no committed checkpoint in '" << root << "'; starting at step 0"
       << std::endl;
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
  if (request.world_size() != n)
    return Invalid("Register: world_size: " + std::to_string(request.world_size()) +
                   " differs from the job's " + std::to_string(n));
  if (request.rank() < 0 || request.rank() >= n)
    return Invalid("Register: rank: " + std::to_string(request.rank()) + " is not in [0, " +
                   std::to_string(n) + ")");
  const std::string& host = request.hostname();
  if (host.empty() || host.size() > kMaxHostname)
    return Invalid("Register: hostname: " + std::to_string(host.size()) +
                   " bytes (1 to 255 expected)");
  for (char c : host)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return Invalid("Register: hostname: contains a space or control character");
  if (request.pid() <= 0)
    return Invalid("Register: pid: " + std::to_string(request.pid()) + " must be > 0");

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
    out_ << "coordinator: all " << n << " ranks registered (generation " << generation_ << ")"
         << std::endl;
  reply->set_job_id(options_.job_id);
  reply->set_generation(generation_);
  reply->set_config_toml(config_.ToToml());
  reply->set_start_step(start_step_);
  reply->set_resume_checkpoint(resume_checkpoint_);
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
    record.reports.resize(options_.world_size);
    if (reply.checkpoint_after()) {
      PendingCheckpoint pending;
      pending.cursor = record.planned.cursor_after;
      pending.parts.resize(options_.world_size);
      pending_[k + 1] = std::move(pending);
      // A manifest left there by an earlier attempt would claim the step is committed while
      // the workers rewrite its files: the step is committed again only by its new manifest.
      fs::remove(CheckpointStepDir(config_, k + 1) + "/" + kManifest);
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
  if (!std::isfinite(request.step_ms()) || request.step_ms() < 0)
    return Invalid("ReportMetrics: step_ms: " + std::to_string(request.step_ms()) +
                   " must be finite and >= 0");
  if (!std::isfinite(request.compute_ms()) || request.compute_ms() < 0)
    return Invalid("ReportMetrics: compute_ms: " + std::to_string(request.compute_ms()) +
                   " must be finite and >= 0");
  if (request.tokens() > static_cast<uint64_t>(record.planned.tokens))
    return Invalid("ReportMetrics: tokens: " + std::to_string(request.tokens()) +
                   " exceeds the step's global batch of " + std::to_string(record.planned.tokens));
  const int planned = record.reply.plan().ranks(rank).micro_batches_size();
  if (request.micro_batch_times_size() > planned)
    return Invalid("ReportMetrics: micro_batch_times: " +
                   std::to_string(request.micro_batch_times_size()) + " entries for rank " +
                   std::to_string(rank) + "'s " + std::to_string(planned) + " micro-batches");
  std::vector<bool> timed(planned, false);
  for (const proto::MicroBatchTiming& t : request.micro_batch_times()) {
    if (t.micro_batch() >= static_cast<uint32_t>(planned) || timed[t.micro_batch()])
      return Invalid("ReportMetrics: micro_batch_times: micro_batch " +
                     std::to_string(t.micro_batch()) + " is not one of rank " +
                     std::to_string(rank) + "'s " + std::to_string(planned) +
                     " micro-batches, or is listed twice");
    if (!std::isfinite(t.start_ms()) || !std::isfinite(t.end_ms()) || t.start_ms() < 0 ||
        t.end_ms() < t.start_ms())
      return Invalid("ReportMetrics: micro_batch_times: micro_batch " +
                     std::to_string(t.micro_batch()) + " has start_ms " +
                     std::to_string(t.start_ms()) + " and end_ms " + std::to_string(t.end_ms()) +
                     " (must be finite, 0 <= start_ms <= end_ms)");
    timed[t.micro_batch()] = true;
  }
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

// The cost file with what this job measured, next to its checkpoints: later jobs and
// `seqmesh simulate` can start from it (docs/PLANNER.md, "Online refit"). A failure to write it
// is a warning: the job does not depend on it.
void Coordinator::WriteRefitCostFile(uint64_t step) {
  const scheduler::CostModel fitted = planner_->Refitted();
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

void Coordinator::FinishStep(uint64_t step, StepRecord& record) {
  double loss = 0, step_ms = 0, compute_ms = 0;
  uint64_t bytes_sent = 0, micro_batches = 0;
  Json rank_loss = Json::Array(), rank_ms = Json::Array(), rank_bytes = Json::Array(),
       rank_mb = Json::Array();
  for (const auto& r : record.reports) {  // in rank order: the sum is reproducible
    loss += r->loss();
    step_ms = std::max(step_ms, r->step_ms());
    compute_ms = std::max(compute_ms, r->compute_ms());
    bytes_sent += r->bytes_sent();
    micro_batches += r->micro_batches();
    rank_loss.Push(NumberOrNull(r->loss()));
    rank_ms.Push(NumberOrNull(r->step_ms()));
    rank_bytes.Push(Json::Integer(static_cast<int64_t>(r->bytes_sent())));
    rank_mb.Push(Json::Integer(r->micro_batches()));
  }
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
    planner_->Learn(record.planned, times, step_ms - compute_ms);
    if (record.reply.checkpoint_after()) WriteRefitCostFile(step);
  }
  // After gradient sync every rank holds the same norm and learning rate; rank 0's are logged.
  const proto::MetricsReport& first = *record.reports[0];
  const double tok_s = step_ms > 0 ? record.planned.tokens / (step_ms / 1e3) : 0.0;
  Json line = Json::Object();
  line.Set("step", Json::Integer(static_cast<int64_t>(step + 1)));  // steps completed (trainer)
  line.Set("loss", NumberOrNull(loss));
  line.Set("grad_norm", NumberOrNull(first.grad_norm()));
  line.Set("lr", NumberOrNull(first.lr()));
  line.Set("tokens", Json::Integer(record.planned.tokens));
  line.Set("target_tokens", Json::Integer(static_cast<int64_t>(record.reply.target_tokens())));
  line.Set("step_ms", NumberOrNull(step_ms));
  line.Set("compute_ms", NumberOrNull(compute_ms));
  line.Set("tok_per_s", NumberOrNull(tok_s));
  line.Set("bytes_sent", Json::Integer(static_cast<int64_t>(bytes_sent)));
  line.Set("micro_batches", Json::Integer(static_cast<int64_t>(micro_batches)));
  line.Set("planner", Json::String(record.reply.plan().planner()));
  line.Set("estimated_step_ms", NumberOrNull(record.reply.plan().estimated_step_ms()));
  line.Set("predicted_step_ms", NumberOrNull(record.planned.predicted_ms));
  Json scales = Json::Object();
  for (const auto& [d, k] : planner_->RefitScales()) scales.Set(std::to_string(d), NumberOrNull(k));
  line.Set("refit_scale", std::move(scales));
  line.Set("generation", Json::Integer(static_cast<int64_t>(generation_)));
  line.Set("rank_loss", std::move(rank_loss));
  line.Set("rank_step_ms", std::move(rank_ms));
  line.Set("rank_bytes_sent", std::move(rank_bytes));
  line.Set("rank_micro_batches", std::move(rank_mb));
  {
    std::ofstream metrics(metrics_path_, std::ios::app);
    metrics << line.Dump() << "\n";
    if (!metrics.good()) {
      JobFailure f;
      f.message = "cannot append to the metrics file '" + metrics_path_ + "'";
      Fail(std::move(f));
    }
  }
  interval_tokens_ += record.planned.tokens;
  interval_ms_ += step_ms;
  const uint64_t done = step + 1;
  if (done % static_cast<uint64_t>(config_.training.log_interval) == 0 || done == total_steps_) {
    const double rate = interval_ms_ > 0 ? interval_tokens_ / (interval_ms_ / 1e3) : 0.0;
    out_ << "step: " << done << "  loss: " << Fixed(loss, 4)
         << "  grad_norm: " << Fixed(first.grad_norm(), 4) << "  lr: " << Sci(first.lr())
         << "  tok/s: " << Fixed(rate, 0) << "  sent: " << Bytes(static_cast<double>(bytes_sent))
         << "  micro-batches: " << micro_batches << std::endl;
    interval_tokens_ = 0;
    interval_ms_ = 0;
  }
}

grpc::Status Coordinator::CommitCheckpoint(const proto::CheckpointPart& request,
                                           proto::CommitReply* reply) {
  const int rank = request.rank();
  const uint64_t step = request.step();
  // Fields first, without the lock.
  if (request.files_size() == 0 || request.files_size() > kMaxFilesPerPart)
    return Invalid("CommitCheckpoint: files: " + std::to_string(request.files_size()) +
                   " entries (1 to " + std::to_string(kMaxFilesPerPart) + " expected)");
  for (int i = 0; i < request.files_size(); ++i) {
    const proto::FileDigest& f = request.files(i);
    const std::string field = "CommitCheckpoint: files[" + std::to_string(i) + "]";
    if (const std::string why = CheckPartFileName(f.name()); !why.empty())
      return Invalid(field + ".name: '" + f.name() + "' " + why);
    if (!IsHex16(f.fnv1a64()))
      return Invalid(field + ".fnv1a64: '" + f.fnv1a64() + "' is not 16 lowercase hex digits");
    for (int j = 0; j < i; ++j)
      if (request.files(j).name() == f.name())
        return Invalid(field + ".name: '" + f.name() + "' is listed twice");
  }
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
  for (int i = 0; i < request.files_size(); ++i) {
    const proto::FileDigest& f = request.files(i);
    const std::string field = "CommitCheckpoint: files[" + std::to_string(i) + "]";
    const std::string path = dir + "/" + f.name();
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      return Invalid(field + ".name: '" + path + "' is not a regular file");
    if (static_cast<uint64_t>(st.st_size) != f.bytes())
      return Invalid(field + ".bytes: '" + path + "' has " + std::to_string(st.st_size) +
                     " bytes, the part says " + std::to_string(f.bytes()));
    uint64_t sum = 0;
    try {
      MappedFile m(path);
      sum = Fnv1a64(m.data(), m.size());
    } catch (const Error& e) {
      return Invalid(field + ".name: " + e.what());
    }
    if (Hex16(sum) != f.fnv1a64())
      return Invalid(field + ".fnv1a64: '" + path + "' has checksum " + Hex16(sum) +
                     ", the part says " + f.fnv1a64());
  }

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
  Json cj = Json::Object();
  cj.Set("step", Json::Integer(static_cast<int64_t>(step)));
  cj.Set("cursor", CursorToJson(pending.cursor));
  cj.Set("generation", Json::Integer(static_cast<int64_t>(generation_)));
  cj.Set("world_size", Json::Integer(options_.world_size));
  cj.Set("job_id", Json::String(options_.job_id));
  const std::string cj_text = cj.Dump() + "\n";
  WriteFileAtomically(dir + "/" + kCoordinatorJson, cj_text.data(), cj_text.size());

  // The manifest uses CheckpointManager's format (decimal FNV-1a 64), plus each part's rank.
  Json files = Json::Array();
  uint64_t total = cj_text.size();
  for (int r = 0; r < options_.world_size; ++r) {
    for (const proto::FileDigest& f : *pending.parts[r]) {
      Json e = Json::Object();
      e.Set("name", Json::String(f.name()));
      e.Set("bytes", Json::Integer(static_cast<int64_t>(f.bytes())));
      e.Set("fnv1a64", Json::String(std::to_string(std::stoull(f.fnv1a64(), nullptr, 16))));
      e.Set("rank", Json::Integer(r));
      files.Push(std::move(e));
      total += f.bytes();
    }
  }
  Json e = Json::Object();
  e.Set("name", Json::String(kCoordinatorJson));
  e.Set("bytes", Json::Integer(static_cast<int64_t>(cj_text.size())));
  e.Set("fnv1a64", Json::String(std::to_string(Fnv1a64(cj_text.data(), cj_text.size()))));
  files.Push(std::move(e));
  Json manifest = Json::Object();
  manifest.Set("step", Json::Integer(static_cast<int64_t>(step)));
  manifest.Set("world_size", Json::Integer(options_.world_size));
  manifest.Set("generation", Json::Integer(static_cast<int64_t>(generation_)));
  manifest.Set("job_id", Json::String(options_.job_id));
  manifest.Set("files", std::move(files));
  const std::string text = manifest.Dump() + "\n";
  // Last, and atomically: from here on the step is committed.
  WriteFileAtomically(dir + "/" + kManifest, text.data(), text.size());
  out_ << "checkpoint: " << dir << " (" << options_.world_size << " parts, " << Bytes(total) << ")"
       << std::endl;

  // Only now may old checkpoints go: the newest `keep` committed ones stay, and the leftovers of
  // earlier attempts (step directories without a manifest, older than this one and not being
  // assembled) are removed.
  const auto committed = CommittedDirs(CheckpointRoot(config_));
  for (size_t i = static_cast<size_t>(config_.checkpoint.keep); i < committed.size(); ++i)
    if (committed[i].first < step) fs::remove_all(committed[i].second);
  for (const auto& entry : fs::directory_iterator(CheckpointRoot(config_))) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("step-", 0) != 0 ||
        fs::exists(entry.path() / kManifest))
      continue;
    const std::string digits = name.substr(5);
    if (digits.empty() ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    const uint64_t s = std::stoull(digits);
    if (s < step && !pending_.count(s)) fs::remove_all(entry.path());
  }
}

}  // namespace seqmesh::launch
