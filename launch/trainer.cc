#include "launch/trainer.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "launch/format.h"
#include "launch/stop_signals.h"
#include "launch/training_data.h"
#include "runtime/batch_sampler.h"
#include "runtime/checkpoint.h"
#include "runtime/cpu/peak.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/indexed_dataset.h"
#include "runtime/json.h"
#include "runtime/layers.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

double ResidentMiB() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

// Global-batch sequences -> packed micro-batches with tokens and next-token targets.
struct MicroBatch {
  std::vector<int32_t> tokens, targets, cu;
  double causal_pairs = 0;
};

struct StepBatch {
  std::vector<MicroBatch> micro;
  float normalizer = 0;  // targets in the whole global batch
  int64_t tokens = 0;
  int64_t cut = 0;  // sequences longer than a micro-batch, cut into independent pieces
};

StepBatch BuildBatch(const std::vector<IndexedDataset>& datasets, std::span<const BlendedId> ids,
                     int64_t capacity) {
  // Pack by position in `ids` (the packer needs one integer per sequence).
  std::vector<int64_t> slots;
  std::vector<int32_t> lengths;
  StepBatch out;
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t len = datasets[ids[k].dataset].Length(ids[k].sequence);
    slots.push_back(static_cast<int64_t>(k));
    lengths.push_back(len);
    out.normalizer += static_cast<float>(std::max(0, len - 1));
    out.tokens += len;
  }
  const PackResult packed = PackMicroBatches(slots, lengths, capacity);
  out.cut = packed.cut_sequences;
  std::vector<int32_t> seq;
  for (const MicroBatchPlan& plan : packed.micro_batches) {
    MicroBatch mb;
    mb.cu = plan.cu_seqlens;
    for (const PackedPiece& p : plan.pieces) {
      // The piece and the token after it (its last target), not the whole sequence.
      const IndexedDataset& ds = datasets[ids[p.id].dataset];
      const int64_t full = ds.Length(ids[p.id].sequence);
      seq.clear();
      ds.ReadRange(ids[p.id].sequence, p.begin, std::min(p.length + 1, full - p.begin), seq);
      for (int64_t i = 0; i < p.length; ++i) {
        mb.tokens.push_back(seq[i]);
        mb.targets.push_back(i + 1 < static_cast<int64_t>(seq.size()) ? seq[i + 1] : kIgnoreIndex);
      }
      mb.causal_pairs += 0.5 * static_cast<double>(p.length) * (p.length + 1);
    }
    out.micro.push_back(std::move(mb));
  }
  return out;
}

Batch View(const MicroBatch& mb) {
  Batch b;
  b.tokens = mb.tokens.data();
  b.targets = mb.targets.data();
  b.cu_seqlens = mb.cu.data();
  b.num_docs = static_cast<int64_t>(mb.cu.size()) - 1;
  b.num_tokens = static_cast<int64_t>(mb.tokens.size());
  return b;
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
  fs::create_directories(run_dir);
  const std::string resolved = config.ToToml();
  out << "# resolved configuration (saved to " << run_dir << "/config.toml)\n" << resolved;
  { std::ofstream(run_dir + "/config.toml") << resolved; }

  // Datasets of the blend, held-out validation sequences and the sampler: opened as the
  // coordinator opens them, so both draw the same global batches from the same config.
  TrainingData data = OpenTrainingData(config);
  const std::vector<IndexedDataset>& datasets = data.datasets;
  const std::vector<BlendedId>& validation = data.validation;
  const BlendedBatchSampler& sampler = data.sampler;
  const int64_t train_sequences = data.train_sequences, tokens_total = data.tokens_total;

  ModelOptions mo;
  mo.max_tokens = config.training.micro_batch_tokens;
  mo.checkpoint_layers.assign(config.model.layers, config.training.checkpoint_activations);
  mo.backend = MakeBackend(Device::kCpu, {static_cast<int>(config.training.threads)});
  Model model(config.model, mo);
  model.InitRandom(static_cast<uint64_t>(config.training.seed));
  if (!options.init_from.empty()) LoadHfWeights(model, options.init_from);
  AdamW adamw(model.params(), config.adamw(), {model.shared_backend()});
  const LrSchedule schedule = config.schedule();
  CheckpointManager checkpoints(run_dir + "/checkpoints", static_cast<int>(config.checkpoint.keep));
  TrainState state;
  state.cursor = sampler.Start();
  if (options.resume) {
    const auto latest = checkpoints.Latest();
    SM_CHECK(latest.has_value()) << "--resume: no complete checkpoint in '" << run_dir
                                 << "/checkpoints'";
    state = CheckpointManager::Load(*latest, model, adamw);
    out << "resumed: " << *latest << " (step " << state.step << ")\n";
  }
  const std::string metrics_path = config.metrics_path();
  std::ofstream metrics(metrics_path, std::ios::app);
  SM_CHECK(metrics.good()) << "cannot open the metrics file '" << metrics_path << "'";

  const double peak = MeasureFmaPeakGflops(static_cast<int>(config.training.threads), 2'000'000);
  const bool tty = ::isatty(STDOUT_FILENO);
  out << "model: " << config.model.NumParams() << " params; data: " << datasets.size()
      << " dataset(s), " << train_sequences << " training and " << validation.size()
      << " validation sequences, " << tokens_total << " tokens; peak " << Fixed(peak, 1)
      << " GFLOP/s\n";

  auto validate = [&]() {
    if (validation.empty()) return std::nan("");
    // The first held-out sequences up to about 64K tokens: the same set at every evaluation.
    constexpr int64_t kValidationTokens = 1 << 16;
    std::vector<BlendedId> ids;
    int64_t tokens = 0;
    for (size_t k = 0; k < validation.size() && tokens < kValidationTokens; ++k) {
      ids.push_back(validation[k]);
      tokens += datasets[validation[k].dataset].Length(validation[k].sequence);
    }
    const StepBatch vb = BuildBatch(datasets, ids, config.training.micro_batch_tokens);
    double loss = 0;
    for (const MicroBatch& mb : vb.micro) loss += model.Forward(View(mb), vb.normalizer);
    return loss;
  };

  auto save = [&]() {
    const std::string where = checkpoints.Save(model, adamw, state);
    out << "checkpoint: " << where << std::endl;
  };
  const auto start = std::chrono::steady_clock::now();
  int64_t tokens_since = 0;
  int64_t cut_total = 0;  // sequences cut to fit a micro-batch so far (reported, not hidden)
  double flops_since = 0;
  auto since = start;
  while (state.step < config.training.steps) {
    const std::vector<BlendedId> ids = sampler.Next(state.cursor);
    const StepBatch batch = BuildBatch(datasets, ids, config.training.micro_batch_tokens);
    model.ZeroGrad();
    double loss = 0, pairs = 0;
    for (const MicroBatch& mb : batch.micro) {
      loss += model.Forward(View(mb), batch.normalizer);
      model.Backward();
      pairs += mb.causal_pairs;
    }
    const double norm = model.backend().GlobalNorm(model.grads());
    const float lr = schedule.At(state.step);
    adamw.Step(model.params(), model.grads(), lr,
               ClipScale(norm, static_cast<float>(config.training.grad_clip)));
    ++state.step;
    tokens_since += batch.tokens;
    flops_since +=
        6.0 * config.model.NumMatmulParams() * batch.tokens +
        12.0 * config.model.layers * config.model.heads * config.model.head_dim() * pairs;

    Json line = Json::Object();
    line.Set("step", Json::Integer(state.step));
    line.Set("loss", Json::Number(loss));
    line.Set("grad_norm", Json::Number(norm));
    line.Set("lr", Json::Number(lr));
    line.Set("tokens", Json::Integer(batch.tokens));
    line.Set("cut_sequences", Json::Integer(batch.cut));
    cut_total += batch.cut;
    double val = std::nan("");
    if (config.training.eval_interval > 0 && state.step % config.training.eval_interval == 0) {
      val = validate();
      if (!std::isnan(val)) line.Set("val_loss", Json::Number(val));
    }
    metrics << line.Dump() << "\n" << std::flush;

    if (state.step % config.training.log_interval == 0 || state.step == config.training.steps) {
      const auto now = std::chrono::steady_clock::now();
      const double secs = std::chrono::duration<double>(now - since).count();
      const double gflops = flops_since / secs / 1e9;
      if (tty) out << "\r\033[K";
      out << "step: " << state.step << "  loss: " << Fixed(loss, 4)
          << "  grad_norm: " << Fixed(norm, 4) << "  lr: " << Sci(lr)
          << "  tok/s: " << Fixed(tokens_since / secs, 0) << "  gflops: " << Fixed(gflops, 1)
          << "  mfu: " << Fixed(peak > 0 ? 100.0 * gflops / peak : 0.0, 1) << "%"
          << "  mem: " << Fixed(ResidentMiB(), 0) << "MiB";
      if (cut_total > 0) out << "  cut: " << cut_total;
      if (!std::isnan(val)) out << "  val_loss: " << Fixed(val, 4);
      out << std::endl;  // a log line reaches a pipe or file at once
      tokens_since = 0;
      flops_since = 0;
      since = now;
    } else if (tty) {
      const int width = 30;
      const int done = static_cast<int>(width * state.step / config.training.steps);
      out << "\r[" << std::string(done, '=') << std::string(width - done, ' ') << "] " << state.step
          << "/" << config.training.steps << std::flush;
    }
    if (config.checkpoint.interval > 0 && state.step % config.checkpoint.interval == 0 &&
        state.step < config.training.steps)
      save();
    if (const int sig = StopSignals::Received()) {
      out << "\nstopping on signal " << sig << " at step " << state.step << "\n";
      save();
      return 0;
    }
  }
  save();
  return 0;
}

}  // namespace seqmesh::launch
