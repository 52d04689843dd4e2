// `seqmesh train` and the Python package's Trainer: a world of one rank running the one step path
// (DESIGN.md section 3): the in-process StepPlanner draws and plans each step (the packed plan:
// long sequences cut), HdpStep runs it on a WorldOfOne communicator (no MPI, no gRPC), and
// checkpoints are the layout every job writes (launch/job_checkpoint.h), so `launch -n N` resumes
// them and this resumes theirs.
#include "launch/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "launch/activation_offload_setup.h"
#include "launch/dist_checkpoint.h"
#include "launch/format.h"
#include "launch/job_checkpoint.h"
#include "launch/machine_peak.h"
#include "launch/metrics_file.h"
#include "launch/nonfinite.h"
#include "launch/optimizer_offload.h"
#include "launch/preflight.h"
#include "launch/run_dir.h"
#include "launch/run_trace.h"
#include "launch/step_metrics.h"
#include "launch/stop_signals.h"
#include "launch/tensorboard.h"
#include "launch/training_data.h"
#include "launch/validation.h"
#include "offload/parameter_offload.h"
#include "parallel/hdp_step.h"
#include "parallel/world_of_one.h"
#include "runtime/backend.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/json.h"
#include "runtime/trace.h"
#include "scheduler/step_planner.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

// The world of one: its communicator, its step, and where the run stands.
struct LocalRun {
  WorldOfOne comm;
  NoRingLink link;
  std::optional<OptimizerOffload> offload;  // destroyed after hdp, which owns the store it sees
  std::optional<ActivationOffload> activations;   // outlives hdp's model, which uses its store
  std::optional<OffloadedParameterStore> params;  // the same (offload.parameters)
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
      DigestFiles(dir, WriteCheckpointPart(dir, 0, 1, run.hdp->model(), run.hdp->sync(),
                                           config.checkpoint.export_dtype)));
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
             const std::string& offload, MachinePeak& peak, Throughput& t, std::ostream& out) {
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
  out << offload << std::endl;  // a log line reaches a pipe or file at once
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
Json StepRecord(uint64_t step, double loss, double norm, float lr, int64_t tokens,
                int64_t cut_sequences, double val, double step_ms) {
  Json line = Json::Object();
  line.Set("step", Json::Integer(static_cast<int64_t>(step)));
  // JSON has no NaN or infinity: a non-finite loss or norm (a skipped step) is written as null.
  line.Set("loss", std::isfinite(loss) ? Json::Number(loss) : Json());
  line.Set("grad_norm", std::isfinite(norm) ? Json::Number(norm) : Json());
  line.Set("lr", Json::Number(lr));
  line.Set("tokens", Json::Integer(tokens));
  line.Set("cut_sequences", Json::Integer(cut_sequences));
  if (!std::isnan(val)) line.Set("val_loss", Json::Number(val));
  // As launch's records: when, how long, how fast, how much memory (these vary run to run).
  line.Set("time", Json::String(UtcTimestamp()));
  line.Set("step_ms", Json::Number(step_ms));
  line.Set("tok_per_s", Json::Number(step_ms > 0 ? tokens / (step_ms / 1e3) : 0.0));
  line.Set("mem_mib", Json::Number(ResidentMiB()));
  if (!std::isfinite(norm)) line.Set("skipped", Json::Bool(true));  // no update (nonfinite)
  return line;
}

// The run directory, the resolved config and the model; returns the run state to train from.
void Setup(RunConfig& config, const TrainerOptions& options, const TrainingData* data,
           LocalRun& run, std::ostream& out) {
  SM_CHECK(!config.distributed.offload)
      << "distributed.offload = true gives long sequences fewer ranks of a ring (seqmesh launch); "
         "seqmesh train runs one rank: set it to false, and use training.checkpoint_activations "
         "= \"selective\" with offload.activations to offload there";
  HdpStepOptions so;
  so.capacity = config.training.micro_batch_tokens;
  const int64_t max_tokens = HdpStep::ActivationTokens(so.capacity);
  const ActivationSetup acts =
      PlanActivationSetup(config, max_tokens, scheduler::PlannerCostModel(config), 1, 0);
  so.checkpoint_layers = acts.checkpoint_layers;
  so.offload_layers = acts.offload_layers;
  const DeviceChoice device = ChooseComputeDevice(config.training.device);
  if (!device.note.empty()) std::cerr << device.note << std::endl;
  so.backend = MakeBackend(device.device, {static_cast<int>(config.training.threads)});
  so.precision = config.training.precision;
  so.lora = config.lora;
  so.lora_seed = static_cast<uint64_t>(config.training.seed);
  run.offload.emplace(config.offload, 0);
  so.optimizer_state = run.offload->Factory();
  run.activations.emplace(config, acts, max_tokens);
  run.hdp.emplace(config.model, so, run.comm, run.link, config.adamw());
  if (run.activations->store()) run.hdp->model().UseActivationStore(run.activations->store());
  // From here every sweep over the weights (initialization, loads, the optimizer's update,
  // checkpoint saves) and every pass goes through the store: a group or two resident at once.
  const std::string params =
      UseParameterOffload(config.offload, *run.hdp, *run.offload, run.params);
  if (!params.empty()) out << "offload: " << params << "\n";
  if (run.offload->enabled()) out << "offload: " << run.offload->Describe() << "\n";
  if (!acts.note.empty()) out << acts.note << "\n";
  if (run.activations->store()) out << "activations: " << run.activations->Describe() << "\n";
  if (config.training.precision == Precision::kBf16)
    out << "precision: bf16 matrix multiplications with fp32 accumulation and master weights ("
        << DescribeBf16Matmul(Device::kCpu) << ")\n";
  run.hdp->model().InitRandom(static_cast<uint64_t>(config.training.seed));
  if (!options.init_from.empty()) LoadHfWeights(run.hdp->model(), options.init_from);
  if (data != nullptr) run.cursor = data->sampler.Start();
  run.job_id = LocalJobId();
}

// The caller's documents, checked: each one non-empty with ids below the vocab.
void CheckDocuments(const Documents& documents, int64_t vocab) {
  SM_CHECK(!documents.empty()) << "documents: the batch is empty; pass at least one document";
  int64_t targets = 0;
  for (size_t d = 0; d < documents.size(); ++d) {
    SM_CHECK(!documents[d].empty()) << "documents[" << d << "] is empty; every document needs "
                                    << "at least one token";
    for (size_t t = 0; t < documents[d].size(); ++t) {
      const int32_t id = documents[d][t];
      SM_CHECK(id >= 0 && id < vocab)
          << "documents[" << d << "][" << t << "] is token id " << id
          << ", outside the model's vocabulary [0, " << vocab << ") (model.vocab)";
    }
    targets += static_cast<int64_t>(documents[d].size()) - 1;
  }
  SM_CHECK(targets > 0) << "documents: every document has one token, so there is no next token "
                           "to predict; pass a document of at least two tokens";
}

TokenReader DocumentReader(const Documents& documents) {
  return [&documents](uint64_t seq, int64_t begin, int64_t end, std::vector<int32_t>& out) {
    SM_CHECK(seq < documents.size())
        << "the plan names document " << seq << " of " << documents.size();
    out.insert(out.end(), documents[seq].begin() + begin, documents[seq].begin() + end);
  };
}

std::vector<int64_t> LengthsOf(const Documents& documents, uint64_t* target_tokens) {
  std::vector<int64_t> lengths;
  *target_tokens = 0;
  for (const auto& d : documents) {
    lengths.push_back(static_cast<int64_t>(d.size()));
    *target_tokens += d.size() - 1;
  }
  return lengths;
}

}  // namespace

// What one step runs on: a plan, its tokens and where the data cursor goes after it.
struct StepInputs {
  std::chrono::steady_clock::time_point start;
  int64_t start_us = 0;  // the same instant in the trace's clock
  const proto::StepPlan* plan = nullptr;
  uint64_t target_tokens = 0;
  int64_t tokens = 0;
  int64_t cut_sequences = 0;
  TokenReader read;
  std::optional<BlendCursor> cursor_after;  // none: the caller's documents
};

struct Trainer::State {
  std::optional<TrainingData> data;
  std::unique_ptr<LocalRun> run = std::make_unique<LocalRun>();
  scheduler::CostModel cost;
  std::optional<scheduler::StepPlanner> planner;
  ValidationSet validation;
  std::ofstream metrics;
  std::optional<EventFileWriter> events;  // metrics.tensorboard
  std::optional<RunTrace> trace;          // metrics.trace
  std::optional<MachinePeak> peak;
  std::optional<LrSchedule> schedule;
  std::optional<NonFiniteGuard> guard;
  Throughput since;
  int64_t cut_total = 0;  // sequences cut to fit a micro-batch so far (reported, not hidden)
  std::optional<uint64_t> saved_step;  // the step of the checkpoint this trainer wrote last
};

Trainer::Trainer(RunConfig config, const TrainerOptions& options, std::ostream& out)
    : config_(std::move(config)), out_(out), s_(std::make_unique<State>()) {
  if (!options.init_from.empty()) {
    config_.model = ReadHfConfig(options.init_from + "/config.json");
    config_.Validate();
  }
  SM_CHECK(!options.require_data || !config_.data.path.empty())
      << "data.path is not set: make a dataset with `seqmesh prep --output data/mytext "
         "FILE...` and train on it with --data.path='\"data/mytext\"' (or data.path in the "
         "config's [data] section)";
  const std::string run_dir = config_.checkpoint.dir;
  SM_CHECK(!(options.resume && options.overwrite))
      << "--resume continues the run in checkpoint.dir and --overwrite moves it aside: pass one";
  if (options.resume)
    CheckResumedConfig(config_, out, "train");
  else
    PrepareFreshRun(config_, options.overwrite, out, "train");
  fs::create_directories(run_dir);
  const std::string resolved = config_.ToToml();
  out << "# resolved configuration (saved to " << run_dir << "/config.toml)\n" << resolved;
  { std::ofstream(run_dir + "/config.toml") << resolved; }

  // The datasets and sampler are opened as the coordinator opens them, so both draw the same
  // global batches from the same config.
  if (!config_.data.path.empty()) {
    s_->data.emplace(OpenTrainingData(config_));
    PreflightJob(config_, *s_->data, {1, false, true, options.init_from}, out);
  }
  LocalRun& run = *s_->run;
  Setup(config_, options, s_->data ? &*s_->data : nullptr, run, out);
  if (options.resume) {
    SM_CHECK(s_->data) << "--resume needs the run's data (data.path) to continue its data cursor";
    Resume(config_, *s_->data, run, out);
  }
  s_->cost = scheduler::PlannerCostModel(config_);
  if (s_->data) {
    s_->planner.emplace(s_->cost, scheduler::StepPlannerOptions::FromConfig(config_, 1),
                        s_->data->sampler, s_->data->prefixes, run.step, run.cursor,
                        s_->data->trained_targets);
    s_->validation = ChooseValidationSet(*s_->data);
  }
  const std::string metrics_path = config_.metrics_path();
  // Steps after the one resumed from are redone: their earlier records are superseded.
  if (const int64_t n = SupersedeRecordsAfter(metrics_path, run.step))
    out << "train: " << n << " record(s) of steps after " << run.step << " moved to '"
        << metrics_path << ".superseded' (those steps are redone)\n";
  s_->metrics.open(metrics_path, std::ios::app);
  SM_CHECK(s_->metrics.good()) << "cannot open the metrics file '" << metrics_path << "'";
  if (config_.metrics.tensorboard) s_->events.emplace(config_.tensorboard_dir());
  s_->trace.emplace(config_, 0, std::nullopt, "train");

  s_->peak.emplace(static_cast<int>(config_.training.threads));
  out << "model: " << config_.model.NumParams() << " params";
  if (config_.lora.rank > 0)
    out << " (frozen; LoRA r = " << config_.lora.rank << " trains "
        << LoraParams(config_.model, config_.lora) << ")";
  out << "; data: ";
  if (s_->data)
    out << s_->data->datasets.size() << " dataset(s), " << s_->data->train_sequences
        << " training and " << s_->data->validation.size() << " validation sequences, "
        << s_->data->tokens_total << " tokens";
  else
    out << "the caller's documents";
  out << "; peak " << Fixed(s_->peak->gflops(), 1) << " GFLOP/s\n";
  s_->schedule.emplace(config_.schedule());
  s_->guard.emplace(config_.training);
}

Trainer::~Trainer() = default;

uint64_t Trainer::step() const { return s_->run->step; }
bool Trainer::done() const { return static_cast<int64_t>(step()) >= config_.training.steps; }
bool Trainer::has_data() const { return s_->data.has_value(); }
Model& Trainer::model() { return s_->run->hdp->model(); }
bool Trainer::gradients_resident() const { return !s_->run->hdp->sync().gradients_released(); }

void Trainer::CheckNotDone() const {
  SM_CHECK(!done()) << "the run has done all its training.steps (" << config_.training.steps
                    << "); raise training.steps to train further";
}

Json Trainer::Step() {
  CheckNotDone();
  SM_CHECK(s_->planner) << "this run has no dataset (data.path is not set): pass the step its "
                           "documents, or set data.path to a `seqmesh prep` dataset";
  StepInputs in;
  in.start = std::chrono::steady_clock::now();
  in.start_us = trace::NowUs();
  const scheduler::PlannedStep planned = s_->planner->Next();
  in.plan = &planned.plan;
  in.target_tokens = planned.target_tokens;
  in.tokens = planned.tokens;
  in.cut_sequences = planned.cut_sequences;
  in.read = BatchTokenReader(*s_->data, planned.batch);
  in.cursor_after = planned.cursor_after;
  return Finish(in);
}

Json Trainer::Step(const Documents& documents) {
  CheckNotDone();
  CheckDocuments(documents, config_.model.vocab);
  StepInputs in;
  in.start = std::chrono::steady_clock::now();
  in.start_us = trace::NowUs();
  const std::vector<int64_t> lengths = LengthsOf(documents, &in.target_tokens);
  const proto::StepPlan plan = scheduler::PlanFixedBatch(
      s_->cost, scheduler::StepPlannerOptions::FromConfig(config_, 1), lengths, step());
  in.plan = &plan;
  for (int64_t len : lengths) {
    in.tokens += len;
    in.cut_sequences += len > config_.training.micro_batch_tokens;
  }
  in.read = DocumentReader(documents);
  return Finish(in);
}

Json Trainer::Finish(const StepInputs& in) {
  LocalRun& run = *s_->run;
  // The step from its start (planning included) to its record, in the trace.
  struct StepEvent {
    int64_t start_us, step;
    ~StepEvent() {
      trace::Complete("step " + std::to_string(step), "step", start_us, trace::NowUs() - start_us,
                      {trace::Int("step", step)});
      trace::Flush();
    }
  } step_event{in.start_us, static_cast<int64_t>(run.step + 1)};
  const ModelConfig& m = config_.model;
  const float lr = s_->schedule->At(static_cast<int64_t>(run.step));
  const HdpStepResult done = run.hdp->Run(*in.plan, in.target_tokens, in.read, lr,
                                          static_cast<float>(config_.training.grad_clip));
  ++run.step;
  if (in.cursor_after) run.cursor = *in.cursor_after;
  s_->since.tokens += in.tokens;
  const double step_flops = StepModelFlops(m, *in.plan, in.tokens, config_.lora);
  s_->since.flops += step_flops;
  s_->cut_total += in.cut_sequences;
  double val = std::nan("");
  if (config_.training.eval_interval > 0 && run.step % config_.training.eval_interval == 0) {
    const trace::Scope s("validation", "step");
    val = Evaluate();
  }
  const double step_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - in.start)
          .count();
  Json record = StepRecord(run.step, done.run.loss, done.grad_norm, lr, in.tokens, in.cut_sequences,
                           val, step_ms);
  // The step's model FLOP/s over this machine's measured peak (launch/machine_peak.h).
  if (step_ms > 0) record.Set("mfu", Json::Number(s_->peak->Mfu(step_flops / step_ms / 1e6)));
  std::string offload_text;
  if (run.offload->enabled() || run.activations->store()) {
    proto::OffloadReport f;
    if (run.offload->enabled()) f = ReportOf(run.offload->TakeStepFigures());
    if (run.activations->store()) run.activations->TakeStepFigures(f);
    if (run.params) TakeParameterFigures(*run.params, f);
    AddOffloadFields(f, record);
    offload_text = OffloadConsoleText(f);
  }
  s_->metrics << record.Dump() << "\n" << std::flush;
  if (s_->events) s_->events->WriteScalars(static_cast<int64_t>(run.step), ScalarsOf(record));
  s_->guard->Check(run.step, done.run.loss, done.grad_norm);  // throws when the run must stop
  const bool last = static_cast<int64_t>(run.step) == config_.training.steps;
  if (run.step % config_.training.log_interval == 0 || last)
    LogLine(run.step, done.run.loss, done.grad_norm, lr, val, s_->cut_total, offload_text,
            *s_->peak, s_->since, out_);
  else if (::isatty(STDOUT_FILENO))
    ProgressBar(run.step, config_.training.steps, out_);
  if (config_.checkpoint.interval > 0 && run.step % config_.checkpoint.interval == 0 && !last)
    Save();
  return record;
}

std::string Trainer::Save() {
  const std::string dir = CheckpointStepDir(config_, step());
  if (s_->saved_step == step()) return dir;  // already written (an interval, then a stop)
  const trace::Scope s("checkpoint", "checkpoint", {trace::Int("step", int64_t(step()))});
  launch::Save(config_, *s_->run, out_);
  s_->saved_step = step();
  return dir;
}

void Trainer::Load(const std::string& checkpoint_dir) {
  const CommittedCheckpoint cp = ReadCommittedCheckpoint(checkpoint_dir);
  LocalRun& run = *s_->run;
  if (s_->data) {
    SM_CHECK(cp.cursor.datasets.size() == s_->data->datasets.size())
        << "checkpoint '" << cp.dir << "' has a data cursor over " << cp.cursor.datasets.size()
        << " dataset(s), but data.path names " << s_->data->datasets.size()
        << " (was the blend changed?)";
  }
  LoadCheckpointParts(cp.dir, run.hdp->model(), run.hdp->sync());
  run.step = cp.step;
  run.cursor = cp.cursor;
  s_->saved_step.reset();
  if (s_->data)
    s_->planner.emplace(s_->cost, scheduler::StepPlannerOptions::FromConfig(config_, 1),
                        s_->data->sampler, s_->data->prefixes, run.step, run.cursor,
                        s_->data->trained_targets);
  out_ << "loaded: " << cp.dir << " (step " << cp.step << ")\n";
}

double Trainer::Evaluate() {
  if (!s_->data) return std::nan("");
  return ValidationLoss(*s_->run->hdp, s_->run->comm, s_->validation, *s_->data, s_->cost,
                        scheduler::StepPlannerOptions::FromConfig(config_, 1));
}

double Trainer::Evaluate(const Documents& documents) {
  CheckDocuments(documents, config_.model.vocab);
  uint64_t targets = 0;
  const std::vector<int64_t> lengths = LengthsOf(documents, &targets);
  const proto::StepPlan plan = scheduler::PlanFixedBatch(
      s_->cost, scheduler::StepPlannerOptions::FromConfig(config_, 1), lengths, 0);
  return s_->run->hdp->Evaluate(plan, targets, DocumentReader(documents));
}

int Train(RunConfig config, const TrainerOptions& options, std::ostream& out) {
  StopSignals signals;  // first: before any thread is started
  Trainer trainer(std::move(config), options, out);
  while (!trainer.done()) {
    trainer.Step();
    if (const int sig = StopSignals::Received()) {
      out << "\nstopping on signal " << sig << " at step " << trainer.step() << "\n";
      trainer.Save();
      return 0;
    }
  }
  trainer.Save();
  return 0;
}

}  // namespace seqmesh::launch
