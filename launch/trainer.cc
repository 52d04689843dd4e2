// `seqmesh train`: a world of one rank running the one step path (DESIGN.md section 3): the
// in-process StepPlanner draws and plans each step (the packed plan: long sequences cut), HdpStep
// runs it on a WorldOfOne communicator (no MPI, no gRPC), and checkpoints are the layout every
// job writes (launch/job_checkpoint.h), so `launch -n N` resumes them and this resumes theirs.
#include "launch/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "launch/dist_checkpoint.h"
#include "launch/format.h"
#include "launch/job_checkpoint.h"
#include "launch/machine_peak.h"
#include "launch/metrics_file.h"
#include "launch/nonfinite.h"
#include "launch/preflight.h"
#include "launch/run_dir.h"
#include "launch/stop_signals.h"
#include "launch/training_data.h"
#include "launch/validation.h"
#include "parallel/hdp_step.h"
#include "parallel/world_of_one.h"
#include "runtime/backend.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/json.h"
#include "scheduler/step_planner.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

// Causal (query, key) pairs of a packed plan: each segment is a document of its own.
double CausalPairs(const proto::StepPlan& plan) {
  double pairs = 0;
  for (const proto::RankPlan& r : plan.ranks())
    for (const proto::MicroBatch& mb : r.micro_batches())
      for (const proto::Segment& seg : mb.segments())
        for (const proto::TokenRange& t : seg.ranges()) {
          const double len = static_cast<double>(t.end() - t.begin());
          pairs += 0.5 * len * (len + 1);
        }
  return pairs;
}

// The world of one: its communicator, its step, and where the run stands.
struct LocalRun {
  WorldOfOne comm;
  NoRingLink link;
  std::optional<HdpStep> hdp;
  uint64_t step = 0;   // steps completed
  BlendCursor cursor;  // where the next global batch starts
  std::string job_id;
};

// Writes the checkpoint after `run.step` steps: the rank's part, then the commit (manifest
// last), then prunes to checkpoint.keep.
void Save(const RunConfig& config, LocalRun& run, std::ostream& out) {
  const std::string dir = CheckpointStepDir(config, run.step);
  JobCommit commit;
  commit.step = run.step;
  commit.cursor = run.cursor;
  commit.job_id = run.job_id;
  commit.parts.push_back(
      DigestFiles(dir, WriteCheckpointPart(dir, 0, 1, run.hdp->model(), run.hdp->sync())));
  WriteJobCommit(dir, commit);
  PruneJobCheckpoints(CheckpointRoot(config), config.checkpoint.keep, run.step,
                      [](uint64_t) { return false; });
  out << "checkpoint: " << dir << std::endl;
}

// --resume: the newest committed checkpoint, whatever world size wrote it.
void Resume(const RunConfig& config, const TrainingData& data, LocalRun& run, std::ostream& out) {
  const std::string root = CheckpointRoot(config);
  const std::optional<CommittedCheckpoint> cp = NewestUsableCheckpoint(root, out, "train");
  if (!cp) {
    SM_CHECK(!fs::exists(root + "/checkpoints"))
        << "--resume: '" << root << "/checkpoints' holds checkpoints in the layout of earlier "
        << "seqmesh versions (train_state.safetensors), which this one does not read; resume "
        << "them with the seqmesh that wrote them, or start a new run without --resume";
    out << "train: --resume: no committed checkpoint in '" << root << "'; starting at step 0"
        << std::endl;
    return;
  }
  SM_CHECK(cp->cursor.datasets.size() == data.datasets.size())
      << "checkpoint '" << cp->dir << "' has a data cursor over " << cp->cursor.datasets.size()
      << " dataset(s), but data.path names " << data.datasets.size() << " (was the blend changed?)";
  LoadCheckpointParts(cp->dir, run.hdp->model(), run.hdp->sync());
  run.step = cp->step;
  run.cursor = cp->cursor;
  out << "resumed: " << cp->dir << " (step " << cp->step << ", written by " << cp->world_size
      << (cp->world_size == 1 ? " rank)" : " ranks)") << "\n";
}

std::string LocalJobId() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "-" + std::to_string(::getpid()) + "-train";
}

// The console's view of the steps since the last log line.
struct Throughput {
  int64_t tokens = 0;
  double flops = 0;
  std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();
};

void LogLine(uint64_t step, double loss, double norm, float lr, double val, int64_t cut_total,
             MachinePeak& peak, Throughput& t, std::ostream& out) {
  const auto now = std::chrono::steady_clock::now();
  const double secs = std::chrono::duration<double>(now - t.since).count();
  const double gflops = t.flops / secs / 1e9;
  if (::isatty(STDOUT_FILENO)) out << "\r\033[K";
  out << "step: " << step << "  loss: " << Fixed(loss, 4) << "  grad_norm: " << Fixed(norm, 4)
      << "  lr: " << Sci(lr) << "  tok/s: " << Fixed(t.tokens / secs, 0)
      << "  gflops: " << Fixed(gflops, 1) << "  mfu: " << Fixed(100.0 * peak.Mfu(gflops), 1) << "%"
      << "  mem: " << Fixed(ResidentMiB(), 0) << "MiB";
  if (cut_total > 0) out << "  cut: " << cut_total;
  if (!std::isnan(val)) out << "  val_loss: " << Fixed(val, 4);
  out << std::endl;  // a log line reaches a pipe or file at once
  t = Throughput{};
}

void ProgressBar(uint64_t step, int64_t steps, std::ostream& out) {
  const int width = 30;
  const int done = static_cast<int>(width * static_cast<int64_t>(step) / steps);
  out << "\r[" << std::string(done, '=') << std::string(width - done, ' ') << "] " << step << "/"
      << steps << std::flush;
}

// One metrics.jsonl record: the trainer's fields (deterministic: a resumed run's lines equal an
// uninterrupted run's).
Json StepRecord(uint64_t step, double loss, double norm, float lr,
                const scheduler::PlannedStep& planned, double val, double step_ms) {
  Json line = Json::Object();
  line.Set("step", Json::Integer(static_cast<int64_t>(step)));
  // JSON has no NaN or infinity: a non-finite loss or norm (a skipped step) is written as null.
  line.Set("loss", std::isfinite(loss) ? Json::Number(loss) : Json());
  line.Set("grad_norm", std::isfinite(norm) ? Json::Number(norm) : Json());
  line.Set("lr", Json::Number(lr));
  line.Set("tokens", Json::Integer(planned.tokens));
  line.Set("cut_sequences", Json::Integer(planned.cut_sequences));
  if (!std::isnan(val)) line.Set("val_loss", Json::Number(val));
  // As launch's records: when, how long, how fast, how much memory (these vary run to run).
  line.Set("time", Json::String(UtcTimestamp()));
  line.Set("step_ms", Json::Number(step_ms));
  line.Set("tok_per_s", Json::Number(step_ms > 0 ? planned.tokens / (step_ms / 1e3) : 0.0));
  line.Set("mem_mib", Json::Number(ResidentMiB()));
  if (!std::isfinite(norm)) line.Set("skipped", Json::Bool(true));  // no update (nonfinite)
  return line;
}

// The run directory, the resolved config and the model; returns the run state to train from.
void Setup(RunConfig& config, const TrainerOptions& options, const TrainingData& data,
           LocalRun& run, std::ostream& out) {
  HdpStepOptions so;
  so.capacity = config.training.micro_batch_tokens;
  so.checkpoint_layers.assign(config.model.layers, config.training.checkpoint_activations);
  so.backend = MakeBackend(Device::kCpu, {static_cast<int>(config.training.threads)});
  run.hdp.emplace(config.model, so, run.comm, run.link, config.adamw());
  run.hdp->model().InitRandom(static_cast<uint64_t>(config.training.seed));
  if (!options.init_from.empty()) LoadHfWeights(run.hdp->model(), options.init_from);
  run.cursor = data.sampler.Start();
  run.job_id = LocalJobId();
  if (options.resume) Resume(config, data, run, out);
}

}  // namespace

int Train(RunConfig config, const TrainerOptions& options, std::ostream& out) {
  StopSignals signals;  // first: before any thread is started
  if (!options.init_from.empty()) {
    config.model = ReadHfConfig(options.init_from + "/config.json");
    config.Validate();
  }
  SM_CHECK(!config.data.path.empty())
      << "data.path is not set: make a dataset with `seqmesh prep --output data/mytext "
         "FILE...` and train on it with --data.path='\"data/mytext\"' (or data.path in the "
         "config's [data] section)";
  const std::string run_dir = config.checkpoint.dir;
  SM_CHECK(!(options.resume && options.overwrite))
      << "--resume continues the run in checkpoint.dir and --overwrite moves it aside: pass one";
  if (options.resume)
    CheckResumedConfig(config, out, "train");
  else
    PrepareFreshRun(config, options.overwrite, out, "train");
  fs::create_directories(run_dir);
  const std::string resolved = config.ToToml();
  out << "# resolved configuration (saved to " << run_dir << "/config.toml)\n" << resolved;
  { std::ofstream(run_dir + "/config.toml") << resolved; }

  // The datasets and sampler are opened as the coordinator opens them, so both draw the same
  // global batches from the same config.
  const TrainingData data = OpenTrainingData(config);
  PreflightJob(config, data, {1, false, true}, out);
  LocalRun run;
  Setup(config, options, data, run, out);
  const scheduler::CostModel cost = scheduler::PlannerCostModel(config);
  scheduler::StepPlanner planner(cost, scheduler::StepPlannerOptions::FromConfig(config, 1),
                                 data.sampler, data.prefixes, run.step, run.cursor);
  const ValidationSet validation = ChooseValidationSet(data);
  const std::string metrics_path = config.metrics_path();
  // Steps after the one resumed from are redone: their earlier records are superseded.
  if (const int64_t n = SupersedeRecordsAfter(metrics_path, run.step))
    out << "train: " << n << " record(s) of steps after " << run.step << " moved to '"
        << metrics_path << ".superseded' (those steps are redone)\n";
  std::ofstream metrics(metrics_path, std::ios::app);
  SM_CHECK(metrics.good()) << "cannot open the metrics file '" << metrics_path << "'";

  MachinePeak peak(static_cast<int>(config.training.threads));
  out << "model: " << config.model.NumParams() << " params; data: " << data.datasets.size()
      << " dataset(s), " << data.train_sequences << " training and " << data.validation.size()
      << " validation sequences, " << data.tokens_total << " tokens; peak "
      << Fixed(peak.gflops(), 1) << " GFLOP/s\n";

  const LrSchedule schedule = config.schedule();
  const ModelConfig& m = config.model;
  Throughput since;
  NonFiniteGuard guard(config.training);
  int64_t cut_total = 0;  // sequences cut to fit a micro-batch so far (reported, not hidden)
  while (static_cast<int64_t>(run.step) < config.training.steps) {
    const auto step_start = std::chrono::steady_clock::now();
    const scheduler::PlannedStep planned = planner.Next();
    const float lr = schedule.At(static_cast<int64_t>(run.step));
    const HdpStepResult done = run.hdp->Run(planned.plan, planned.target_tokens,
                                            BatchTokenReader(data.datasets, planned.batch), lr,
                                            static_cast<float>(config.training.grad_clip));
    ++run.step;
    run.cursor = planned.cursor_after;
    since.tokens += planned.tokens;
    since.flops += 6.0 * m.NumMatmulParams() * planned.tokens +
                   12.0 * m.layers * m.heads * m.head_dim() * CausalPairs(planned.plan);
    cut_total += planned.cut_sequences;
    double val = std::nan("");
    if (config.training.eval_interval > 0 && run.step % config.training.eval_interval == 0)
      val = ValidationLoss(*run.hdp, run.comm, validation, data.datasets, cost,
                           scheduler::StepPlannerOptions::FromConfig(config, 1));
    const double step_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - step_start)
            .count();
    metrics << StepRecord(run.step, done.run.loss, done.grad_norm, lr, planned, val, step_ms).Dump()
            << "\n"
            << std::flush;
    guard.Check(run.step, done.run.loss, done.grad_norm);  // throws when the run must stop
    const bool last = static_cast<int64_t>(run.step) == config.training.steps;
    if (run.step % config.training.log_interval == 0 || last)
      LogLine(run.step, done.run.loss, done.grad_norm, lr, val, cut_total, peak, since, out);
    else if (::isatty(STDOUT_FILENO))
      ProgressBar(run.step, config.training.steps, out);
    if (config.checkpoint.interval > 0 && run.step % config.checkpoint.interval == 0 && !last)
      Save(config, run, out);
    if (const int sig = StopSignals::Received()) {
      out << "\nstopping on signal " << sig << " at step " << run.step << "\n";
      Save(config, run, out);
      return 0;
    }
  }
  Save(config, run, out);
  return 0;
}

}  // namespace seqmesh::launch
