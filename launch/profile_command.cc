// `seqmesh profile`: measures this machine's cost model (DESIGN.md section 4) with our own
// kernels and communicator, and writes it as a cost file (docs/PLANNER.md) for the planner.
//
//   seqmesh profile --config examples/text.toml --out scheduler/costs/this-cpu.cost
//       [--lengths 1K,2K,4K,8K,16K] [--reps 5] [--threads T] [--check] [--holdout LIST|none]
//       [--name NAME] [--concurrent] [--rings] [--ring-tokens LIST] [--section.key=value ...]
//
// (`seqmesh profile --help` describes every flag and configuration key.)
//
// What is measured, and how:
// - T(s), one layer's forward + backward of one sequence of s tokens. The model has no entry
//   point for a single layer (its layers are private, and timing them from outside would need
//   hooks inside Forward), so each rep runs the config's model with 1 layer and with 2 layers,
//   everything else the same, and takes the difference: the embedding, final norm, lm_head and
//   loss are the same work in both and cancel, and what is left is one whole layer, forward and
//   backward, as the trainer runs it. The two runs are paired within a rep (their order flips
//   every rep), so load drift on a shared machine hits both sides of a difference alike; the
//   medians of the differences of each order are averaged; every rep allocates its models
//   afresh and runs each once untimed; reps go in rounds over all lengths, so a burst of other
//   work spoils one rep of a few lengths rather than every rep of one (LengthTimes says why).
// - Act(s): the model's own activation arena planned for exactly s tokens; a 2-layer model's
//   bytes minus a 1-layer model's are what one layer keeps for its backward (its input in the
//   residual stream and its saved tensors; with training.checkpoint_activations only its input).
//   This is exact accounting, not a measurement.
// - p2p_gbps: under mpirun with >= 2 ranks, ranks 0 and 1 ping-pong buffers of 1..64 MiB
//   through MpiCommunicator; alone, the process sends to itself through the same Communicator
//   (a same-process figure, said so in the file). No process is spawned.
// - d2h_gbps, h2d_gbps: CPU ranks have no device memory; one thread's memcpy of a buffer much
//   larger than the caches stands in for the copies offload would make (said so in the file).
// - kv_bytes_per_token: from the model's shape (f32 K and V, forward and backward).
// - ssd_write_gbps, ssd_read_gbps: when the config offloads to SSD (offload.optimizer,
//   parameters or activations = "nvme"), 64 MiB through the SSD engine in offload.nvme_path
//   (O_DIRECT, its block size and queue depth: MeasureSsdBandwidth); not written otherwise.
//
// Only rank 0 profiles compute and writes the file; MPI is finalized before that, so the other
// ranks exit and leave the cores to it. With --concurrent every rank times the compute at the
// same time (rank 0's figures are written): the per-rank speed of a job whose N ranks share
// this machine's cores, which is what the planner must predict for such a job (4 ranks on this
// 2-core VM run each layer about twice as slowly as one rank alone).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "launch/command.h"
#include "launch/flags.h"
#include "launch/format.h"
#include "launch/machine.h"
#include "launch/profile_timing.h"
#include "launch/ring_profile.h"
#include "offload/activation_offload.h"
#include "parallel/mpi/mpi_communicator.h"
#include "parallel/mpi/mpi_session.h"
#include "runtime/check.h"
#include "runtime/model.h"
#include "runtime/run_config.h"
#include "runtime/text.h"
#include "scheduler/cost_model.h"

namespace seqmesh::launch {
namespace {

constexpr int64_t kMaxLength = 128 * 1024;
constexpr double kCheckTolerance = 0.15;
constexpr int kCheckFailed = 3;

using profile::Clock;
using profile::LengthSample;
using profile::LengthTimes;
using profile::LinkProfile;
using profile::MeasureCopyGbps;
using profile::MeasureP2p;
using profile::MsSince;

int64_t ParseCount(const std::string& flag, const std::string& v, int64_t lo, int64_t hi) {
  const std::optional<int64_t> parsed = ParseInt64(v);
  SM_CHECK(parsed) << flag << ": '" << v << "' is not an integer";
  const int64_t n = *parsed;
  SM_CHECK(n >= lo && n <= hi) << flag << " must be in [" << lo << ", " << hi << "], got " << v;
  return n;
}

// "1K,2K,3000": lengths in tokens, each in [1, kMaxLength], no repeats.
std::vector<int64_t> ParseLengths(const std::string& flag, const std::string& list) {
  std::vector<int64_t> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    SM_CHECK(!item.empty()) << flag << ": empty entry in '" << list << "'";
    int64_t mult = 1;
    std::string digits = item;
    if (digits.back() == 'K' || digits.back() == 'k') mult = 1024, digits.pop_back();
    if (digits.back() == 'M' || digits.back() == 'm') mult = 1024 * 1024, digits.pop_back();
    const std::optional<int64_t> parsed = ParseInt64(digits);
    SM_CHECK(parsed) << flag << ": '" << item
                     << "' is not a length (tokens, optionally with a K suffix)";
    const int64_t n = *parsed;
    SM_CHECK(n >= 1) << flag << ": length " << item << " must be >= 1";
    SM_CHECK(n <= kMaxLength / mult)
        << flag << ": length " << item << " is above the maximum " << kMaxLength
        << " tokens (one layer at that length takes minutes and gigabytes)";
    SM_CHECK(std::find(out.begin(), out.end(), n * mult) == out.end())
        << flag << ": length " << item << " is given twice";
    out.push_back(n * mult);
  }
  SM_CHECK(!out.empty()) << flag << " lists no lengths";
  return out;
}

// --- the machine ---------------------------------------------------------------------------

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  return in >> one ? one : "?";
}

std::string Now() {
  const std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M %Z", std::localtime(&t));
  return buf;
}

// One row of the measured-vs-fitted tables.
struct CheckRow {
  int64_t tokens;
  double measured, predicted;
  double error() const { return (predicted - measured) / measured; }
};

// "# T s one two layer fitted error" rows of the cost file.
std::string SampleTable(const char* tag, const std::vector<LengthSample>& samples,
                        const scheduler::CostModel& model) {
  std::ostringstream os;
  char buf[200];
  for (const LengthSample& m : samples) {
    const double fitted = model.LayerMs(static_cast<double>(m.tokens));
    std::snprintf(buf, sizeof buf, "# %s %7lld %12.3f %12.3f %10.3f %12.3f %+8.2f%% %7.1f%%\n", tag,
                  static_cast<long long>(m.tokens), m.one_layer_ms, m.two_layer_ms, m.layer_ms,
                  fitted, 100 * (fitted - m.layer_ms) / m.layer_ms, 100 * m.spread);
    os << buf;
  }
  return os.str();
}

std::string CheckTable(const char* tag, const std::vector<CheckRow>& rows) {
  std::ostringstream os;
  char buf[160];
  for (const CheckRow& r : rows) {
    std::snprintf(buf, sizeof buf, "%s %7lld %12.3f %12.3f %+8.2f%%\n", tag,
                  static_cast<long long>(r.tokens), r.measured, r.predicted, 100 * r.error());
    os << buf;
  }
  return os.str();
}

double WorstError(const std::vector<CheckRow>& rows) {
  double w = 0;
  for (const CheckRow& r : rows) w = std::max(w, std::fabs(r.error()));
  return w;
}

// Measured vs `model`'s ms at each sample's length.
std::vector<CheckRow> CheckRows(const std::vector<LengthSample>& samples,
                                const scheduler::CostModel& model) {
  std::vector<CheckRow> rows;
  for (const LengthSample& m : samples)
    rows.push_back({m.tokens, m.layer_ms, model.LayerMs(static_cast<double>(m.tokens))});
  return rows;
}

// --- the flags -------------------------------------------------------------------------------

// The command line, parsed; the lists are checked against the configuration by ResolveSetup.
struct ProfileFlags {
  Args args;  // as given, for the file's provenance
  std::string config_path, out_path, name;
  std::string lengths = "1K,2K,4K,8K,16K", holdout, ring_tokens;
  int reps = 5;
  int threads = 0;  // 0: the config's training.threads
  bool check = false, concurrent = false, rings = false;
  std::vector<std::string> overrides;
};

// Empty when -h, --help or --list-flags printed instead.
std::optional<ProfileFlags> ParseProfileFlags(const Args& args) {
  ProfileFlags f;
  f.args = args;
  int64_t reps = f.reps;
  std::string threads;
  FlagParser flags(
      "profile",
      "time one layer (forward + backward) of the config's [model] at each length, fit T(s) = "
      "a1*s^2 + b1*s + g and Act(s) = a2*s + b2, measure point-to-point and copy bandwidth, and "
      "write a cost file for the planner (timings need a quiet machine: load average below 1; "
      "the file records it)",
      "seqmesh profile --config examples/text.toml --out scheduler/costs/this-cpu.cost --check");
  flags
      .String("--config", "FILE", &f.config_path, "a TOML file with a [model] section",
              Required::kYes)
      .String("--out", "FILE", &f.out_path,
              "write the cost file to FILE (default: stdout; the report then goes to stderr)")
      .String("--lengths", "LIST", &f.lengths,
              "lengths to time and fit (at least 3; a K suffix: 1024; at most 128K)")
      .Int("--reps", "N", &reps, "paired reps of each length, in [1, 1000]")
      .String("--threads", "T", &threads,
              "kernel threads, in [1, 1024] (default: the config's training.threads)")
      .Switch("--check", &f.check,
              "print measured vs fitted ms at the fitted and held-out lengths; exit 3 if any "
              "error exceeds 15%")
      .String("--holdout", "LIST|none", &f.holdout,
              "held-out lengths of --check (default: 1.5x each fitted length below the largest)")
      .String("--name", "NAME", &f.name,
              "the cost model's name (default: the --out file's stem, else profiled)")
      .Switch("--concurrent", &f.concurrent,
              "under mpirun -n N, every rank times the compute at once (rank 0's figures are "
              "written): the per-rank speed of a job whose N ranks share this machine")
      .Switch("--rings", &f.rings,
              "under mpirun -n N (N >= 2), time passes on rings of D = 1..N ranks and a gradient "
              "sync + AdamW step (pass_factor_<D>, pass_ms_<D>, step_fixed_ms); use with "
              "--concurrent")
      .String("--ring-tokens", "LIST", &f.ring_tokens,
              "per-rank tokens of the ring passes (default: half and all of the config's "
              "training.micro_batch_tokens)")
      .ConfigOverrides(&f.overrides);
  if (!flags.Parse(args)) return std::nullopt;
  SM_CHECK(reps >= 1 && reps <= 1000) << "--reps must be in [1, 1000], got " << reps;
  f.reps = static_cast<int>(reps);
  if (!threads.empty()) f.threads = static_cast<int>(ParseCount("--threads", threads, 1, 1024));
  return f;
}

// What to measure: the flags checked against the configuration they name, before minutes of
// profiling.
struct ProfileSetup {
  RunConfig config;
  std::vector<int64_t> lengths, holdout, ring_tokens;
  int threads = 0;
  std::string name;
};

// --holdout LIST, or with --check and no --holdout 1.5x each length below the largest.
std::vector<int64_t> HoldoutLengths(const ProfileFlags& f, const std::vector<int64_t>& lengths) {
  std::vector<int64_t> holdout;
  if (f.check && f.holdout.empty()) {
    for (int64_t s : lengths)
      if (s * 3 / 2 < lengths.back()) holdout.push_back(s * 3 / 2);
  } else if (!f.holdout.empty() && f.holdout != "none") {
    holdout = ParseLengths("--holdout", f.holdout);
    std::sort(holdout.begin(), holdout.end());
  }
  return holdout;
}

ProfileSetup ResolveSetup(const ProfileFlags& f) {
  SM_CHECK(std::filesystem::is_regular_file(f.config_path))
      << "--config: '" << f.config_path << "' does not exist or is not a file";
  ProfileSetup s;
  s.config = RunConfig::Load(f.config_path, f.overrides);
  s.lengths = ParseLengths("--lengths", f.lengths);
  std::sort(s.lengths.begin(), s.lengths.end());
  SM_CHECK(s.lengths.size() >= 3) << "--lengths needs at least 3 lengths to fit a1, b1 and g, got "
                                  << s.lengths.size();
  s.holdout = HoldoutLengths(f, s.lengths);
  if (!f.out_path.empty()) {
    // Found now rather than after minutes of profiling.
    const std::filesystem::path dir = std::filesystem::path(f.out_path).parent_path();
    SM_CHECK(dir.empty() || std::filesystem::is_directory(dir))
        << "--out: directory '" << dir.string() << "' does not exist";
  }
  s.threads = f.threads == 0 ? static_cast<int>(s.config.training.threads) : f.threads;
  if (!f.ring_tokens.empty()) {
    SM_CHECK(f.rings) << "--ring-tokens needs --rings";
    s.ring_tokens = ParseLengths("--ring-tokens", f.ring_tokens);
  } else {
    const int64_t c = s.config.training.micro_batch_tokens;
    if (c / 2 > 0) s.ring_tokens.push_back(c / 2);
    s.ring_tokens.push_back(c);
  }
  s.name = f.name;
  if (s.name.empty())
    s.name = f.out_path.empty() ? "profiled" : std::filesystem::path(f.out_path).stem().string();
  SM_CHECK(!s.name.empty() && s.name.find_first_of(" \t#") == std::string::npos)
      << "--name '" << s.name << "' must be one word without '#'";
  return s;
}

// --- measuring -------------------------------------------------------------------------------

// What the profile measured (rank 0's figures).
struct Measurements {
  int rank = 0;  // in the MPI world
  LinkProfile link;
  std::vector<RingSample> rings;  // --rings
  double copy_gbps = 0;
  SsdBandwidth ssd;                     // zero: not measured (the config offloads nothing to SSD)
  std::string load_before, load_after;  // around the compute profile
  std::vector<LengthSample> fit, held;  // --lengths, holdout lengths
};

// Point-to-point (and --rings) first: every rank takes part, then MPI is finalized.
void MeasureLinks(const ProfileFlags& f, const ProfileSetup& s, std::ostream& report,
                  Measurements& m) {
  mpi::Session session(nullptr, nullptr);
  MpiCommunicator comm;
  m.rank = comm.rank();
  m.link = MeasureP2p(comm, f.reps);
  if (!f.rings) return;
  const auto t0 = Clock::now();
  m.rings = MeasureRings(comm, s.config, s.ring_tokens, f.reps, ExecutionContext{s.threads});
  if (m.rank == 0)
    report << "ring passes (" << comm.size() << " ranks): " << Fixed(MsSince(t0) / 1000, 1)
           << " s\n";
}

// All lengths are measured in rounds, one rep of each length per round, so that a burst of
// someone else's work on a shared machine lands on one rep of a few lengths (which the medians
// drop), not on every rep of one length.
std::vector<LengthTimes> TimeLengths(const ProfileSetup& s, int reps, std::ostream& report) {
  std::vector<int64_t> all = s.lengths;
  all.insert(all.end(), s.holdout.begin(), s.holdout.end());
  std::vector<LengthTimes> times(all.begin(), all.end());
  const std::shared_ptr<Backend> backend = MakeBackend(Device::kCpu, ExecutionContext{s.threads});
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (LengthTimes& t : times)
      t.Rep(s.config.model, s.config.training.checkpoint_activations != CheckpointMode::kOff,
            /*flip=*/r % 2 == 1, backend);
    report << "round " << r + 1 << "/" << reps << ": " << Fixed(MsSince(t0) / 1000, 1) << " s";
    if (r == 0) {
      size_t bytes = 0;
      for (const LengthTimes& t : times) bytes = std::max(bytes, t.bytes());
      report << " (the largest models: " << Fixed(bytes / 1048576.0, 0) << " MiB)";
    }
    report << "\n";
    report.flush();
  }
  return times;
}

// The first `fitted` of `times` are the fitted lengths, the rest held out.
void CollectSamples(const std::vector<LengthTimes>& times, size_t fitted, std::ostream& report,
                    Measurements& out) {
  for (size_t i = 0; i < times.size(); ++i) {
    const LengthSample m = times[i].Result();
    (i < fitted ? out.fit : out.held).push_back(m);
    report << "s = " << m.tokens << ": 1 layer " << Fixed(m.one_layer_ms, 3) << " ms, 2 layers "
           << Fixed(m.two_layer_ms, 3) << " ms, layer " << Fixed(m.layer_ms, 3) << " ms (spread "
           << Fixed(100 * m.spread, 1) << "%)\n";
  }
}

// --- fitting ---------------------------------------------------------------------------------

// The model's ms of one ring pass: layers x T(c D)/D.
double RingModelMs(const scheduler::CostModel& model, const RingSample& r) {
  return model.layers_per_rank *
         model.LayerMs(static_cast<double>(r.tokens_per_rank * r.ring_size)) / r.ring_size;
}

// Pass calibration of D: least squares of (pass - head) = factor x model + ms over the per-rank
// token counts, model = layers x T(c D)/D (through the origin when the intercept comes out
// negative); step_fixed_ms: the median sync + AdamW step.
void FitPasses(const std::vector<RingSample>& rings, int ranks, scheduler::CostModel& model) {
  auto measured_ms = [&](const RingSample& r) {
    return r.pass_ms - model.head_ms_per_token * static_cast<double>(r.tokens_per_rank);
  };
  for (int k = 0; !rings.empty() && k < 2 * ranks; ++k) {
    const int d = k / 2 + 1;
    const bool busy = k % 2 == 1;  // the contended calibration (1 < D < N only)
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (const RingSample& r : rings) {
      if (r.ring_size != d || r.others_busy != busy) continue;
      const double x = RingModelMs(model, r), y = measured_ms(r);
      n += 1, sx += x, sy += y, sxx += x * x, sxy += x * y;
    }
    if (n == 0) continue;
    scheduler::CostModel::PassCalibration c;
    const double det = n * sxx - sx * sx;
    if (n >= 2 && det > 0) {
      c.factor = (n * sxy - sx * sy) / det;
      c.ms = (sy - c.factor * sx) / n;
    }
    if (n < 2 || det <= 0 || c.ms < 0 || c.factor <= 0) c = {sxy / sxx, 0.0};
    SM_CHECK(c.factor > 0) << "ring passes of " << d << " ranks: no positive fit";
    (busy ? model.contended_pass : model.pass)[d] = c;
  }
  std::vector<double> syncs;
  // Only where every rank ran the same pass: beside a ring, the sync also waits for the end of
  // the local pass the other ranks were in.
  for (const RingSample& r : rings)
    if (r.ring_size == 1 || r.ring_size == ranks) syncs.push_back(r.sync_ms);
  if (!syncs.empty()) model.step_fixed_ms = Median(syncs);
}

scheduler::CostModel FitCostModel(const ProfileSetup& s, const Measurements& m) {
  const ModelConfig& mc = s.config.model;
  scheduler::CostModel model;
  model.name = s.name;
  model.layers_per_rank = static_cast<int>(mc.layers);
  for (const auto* set : {&m.fit, &m.held}) {
    for (const LengthSample& l : *set) {
      SM_CHECK(l.layer_ms > 0)
          << "at " << l.tokens << " tokens the 2-layer model was not slower than the 1-layer one ("
          << Fixed(l.two_layer_ms, 3) << " vs " << Fixed(l.one_layer_ms, 3)
          << " ms): too short to time one layer here; use longer --lengths or more --reps";
    }
  }
  std::vector<scheduler::ComputeSample> compute, activation;
  for (const LengthSample& l : m.fit) {
    compute.push_back({static_cast<double>(l.tokens), l.layer_ms});
    activation.push_back({static_cast<double>(l.tokens), l.act_bytes});
  }
  // Relative errors: the lengths span two orders of magnitude in time, and the planner (and
  // --check) need each length's time right, not just the longest one's.
  scheduler::FitCompute(compute, model, scheduler::FitError::kRelative);
  scheduler::FitActivation(activation, model);
  // The arena's per-tensor alignment padding is all of b2 (>= 0); rounding in the fit can leave
  // -0 or a few ulps below zero, which cost files reject.
  SM_CHECK(model.a2 > 0) << "activation bytes do not grow with the length (a2 = " << model.a2
                         << ")";
  model.b2 = std::max(0.0, model.b2) + 0.0;
  // One ring step sends K and V forward and K, V, dK, dV backward, f32: 3 * 2 * kv_heads *
  // head_dim * 4 bytes per token.
  model.kv_bytes_per_token = 3.0 * 2 * mc.kv_heads * mc.head_dim() * sizeof(float);
  model.p2p_gbps = m.link.gbps;
  model.d2h_gbps = model.h2d_gbps = m.copy_gbps;
  model.ssd_write_gbps = m.ssd.write_gbps;
  model.ssd_read_gbps = m.ssd.read_gbps;
  // The head (embedding, final norm, lm_head, loss) is what the 1-layer model runs beside its
  // layer: per token, the median over the fitted lengths (a concurrent profile's single
  // differences are noisy; a slope fit would follow the longest length's).
  std::vector<double> per_token;
  for (const LengthSample& l : m.fit)
    per_token.push_back(std::max(0.0, l.one_layer_ms - l.layer_ms) / l.tokens);
  model.head_ms_per_token = Median(per_token);
  FitPasses(m.rings, m.link.ranks, model);
  return model;
}

// --- the cost file ---------------------------------------------------------------------------

// Provenance: the machine, the command, the model and how T(s) was measured.
std::string FileHeader(const ProfileFlags& f, const ProfileSetup& s, const Measurements& m) {
  const ModelConfig& mc = s.config.model;
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  std::string command = "seqmesh profile";
  for (const std::string& a : f.args) command += " " + a;
  std::ostringstream file;
  file << "# " << s.name << ": seqmesh profile of " << f.config_path << "\n"
       << "# Times are one layer's forward + backward of one sequence on one rank, in ms.\n"
       << (f.concurrent ? "# concurrent: all " + std::to_string(m.link.ranks) +
                              " MPI ranks timed the compute at once (per-rank speed of a job of " +
                              std::to_string(m.link.ranks) + " ranks sharing this machine)\n"
                        : std::string())
       << "# machine: " << CpuModelName() << ", " << std::thread::hardware_concurrency()
       << " logical CPUs, AVX-512 " << (__builtin_cpu_supports("avx512f") ? "yes" : "no")
       << ", host " << host << "; " << s.threads << " kernel thread(s)\n"
       << "# date: " << Now() << "; load average (1 min) " << m.load_before << " before, "
       << m.load_after << " after the compute profile\n"
       << "# command: " << command << "\n"
       << "# model: vocab " << mc.vocab << ", hidden " << mc.hidden << ", layers " << mc.layers
       << ", heads " << mc.heads << ", kv_heads " << mc.kv_heads << ", ffn " << mc.ffn
       << ", f32, activation checkpointing "
       << (s.config.training.checkpoint_activations != CheckpointMode::kOff ? "on" : "off") << "\n"
       << "# T(s): (2-layer model) - (1-layer model), one sequence of s tokens, " << f.reps
       << " paired reps\n"
       << "#   in rounds over all lengths, fresh models each rep, each model's first step\n"
       << "#   untimed, the two models' order alternating; the medians of each order's\n"
       << "#   differences averaged.\n"
       << "#   spread: (max - min) of one order's differences over the layer's ms.\n"
       << "# Fitted to the T rows by least squares of the relative errors, coefficients >= 0;\n"
       << "#   H rows are held out.\n";
  return file.str();
}

// The --rings rows: each pass against the model and its calibration.
std::string RingTable(const std::vector<RingSample>& rings, int ranks, int reps,
                      const scheduler::CostModel& model) {
  std::ostringstream file;
  file << "# Rings (--rings): a ring of ranks 0..D-1 of " << ranks
       << " (the others run local passes until it is\n"
       << "#   done), one forward + backward of the model per rep through StepExecutor and\n"
       << "#   MpiRingLink, then a\n"
       << "#   GradSync step (reduce-scatter, AdamW, all-gather); rank 0's medians of " << reps
       << " reps.\n"
       << "#   model ms: layers x T(c D)/D; fitted: pass_factor_<D> x model ms + pass_ms_<D>\n"
       << "#   + head (least squares over c); step_fixed_ms: the median sync.\n"
       << "#   wait ms: of the pass, waiting for ring partners. R rows: the other ranks wait;\n"
       << "#   B rows: they run local passes until the ring is done (contended_*).\n"
       << "#     D        c    pass ms   model ms  fitted ms    error    wait ms    sync ms   "
          "spread\n";
  for (const RingSample& r : rings) {
    char row[192];
    const scheduler::CostModel::PassCalibration c =
        r.others_busy ? model.contended_pass.at(r.ring_size) : model.Pass(r.ring_size);
    const double model_ms = RingModelMs(model, r);
    const double fitted = c.factor * model_ms + c.ms +
                          model.head_ms_per_token * static_cast<double>(r.tokens_per_rank);
    std::snprintf(row, sizeof row,
                  "# %c %3d %8lld %10.3f %10.3f %10.3f %+7.2f%% %10.3f %10.3f %7.1f%%\n",
                  r.others_busy ? 'B' : 'R', r.ring_size, static_cast<long long>(r.tokens_per_rank),
                  r.pass_ms, model_ms, fitted, 100 * (fitted - r.pass_ms) / r.pass_ms, r.wait_ms,
                  r.sync_ms, 100 * r.spread);
    file << row;
  }
  return file.str();
}

// The file: provenance and every sample as comments, then the model.
std::string CostFileText(const ProfileFlags& f, const ProfileSetup& s, const Measurements& m,
                         const scheduler::CostModel& model) {
  const std::vector<CheckRow> fit_rows = CheckRows(m.fit, model),
                              held_rows = CheckRows(m.held, model);
  std::ostringstream file;
  file << FileHeader(f, s, m)
       << "#         s   1 layer ms  2 layers ms   layer ms    fitted ms    error   spread\n"
       << SampleTable("T", m.fit, model) << SampleTable("H", m.held, model)
       << "# worst |error|: " << Fixed(100 * WorstError(fit_rows), 2) << "% fitted";
  if (!held_rows.empty()) file << ", " << Fixed(100 * WorstError(held_rows), 2) << "% held out";
  file << "\n";
  if (model.g == 0 || model.b1 == 0 || model.a1 == 0)
    file << "# (a coefficient is 0: the plain fit made it negative, so it was dropped)\n";
  file << "# Act(s): activation arena bytes of the 2-layer model minus the 1-layer one, both\n"
       << "#   planned for s tokens (exact accounting, not a measurement)\n";
  for (const LengthSample& l : m.fit)
    file << "# A " << l.tokens << " " << static_cast<int64_t>(l.act_bytes) << "\n";
  file << "# p2p: " << m.link.how << "\n";
  for (const auto& t : m.link.transfers)
    file << "# P " << static_cast<int64_t>(t.tokens) << " bytes " << Fixed(t.ms, 4) << " ms\n";
  file << "# d2h/h2d: one thread's memcpy of a 256 MiB buffer, median of " << f.reps << "; CPU\n"
       << "#   ranks have no device, so the copy offload would make is a host copy\n"
       << "# kv_bytes_per_token: 3 * 2 * kv_heads * head_dim * 4 bytes (f32)\n"
       << "# layers_per_rank: the config's model.layers\n"
       << "# head_ms_per_token: (1-layer model - layer) / s, median over the T rows\n";
  if (!m.rings.empty()) file << RingTable(m.rings, m.link.ranks, f.reps, model);
  scheduler::CostModel recorded = model;  // with the machine it was profiled on
  recorded.machine = ThisMachine(s.threads, f.concurrent ? m.link.ranks : 1);
  file << scheduler::FormatCostModel(recorded);
  return file.str();
}

// --- the report ------------------------------------------------------------------------------

void WriteCostFile(const std::string& text, const std::string& out_path, std::ostream& report) {
  if (out_path.empty()) {
    std::cout << text;
    return;
  }
  std::ofstream out(out_path);
  SM_CHECK(out.good()) << "--out: cannot write '" << out_path << "'";
  out << text;
  SM_CHECK(out.good()) << "--out: writing '" << out_path << "' failed";
  report << "wrote " << out_path << "\n";
}

void ReportModel(const scheduler::CostModel& model, bool rings, std::ostream& report) {
  report << "T(s) = " << model.a1 << " s^2 + " << model.b1 << " s + " << model.g
         << " ms; Act(s) = " << model.a2 << " s + " << model.b2 << " bytes; head "
         << model.head_ms_per_token * 1e3 << " us/token\n";
  for (const auto& [d, c] : model.pass)
    report << "passes on " << d << " rank(s): factor " << Fixed(c.factor, 3) << " + "
           << Fixed(c.ms, 2) << " ms per pass\n";
  for (const auto& [d, c] : model.contended_pass)
    report << "passes on " << d << " ranks beside local passes: factor " << Fixed(c.factor, 3)
           << " + " << Fixed(c.ms, 2) << " ms per pass\n";
  if (rings) report << "gradient sync + AdamW: " << Fixed(model.step_fixed_ms, 2) << " ms\n";
}

// --check: measured vs fitted at every length; the exit status.
int ReportCheck(const Measurements& m, const scheduler::CostModel& model, std::ostream& report) {
  const std::vector<CheckRow> fit_rows = CheckRows(m.fit, model),
                              held_rows = CheckRows(m.held, model);
  report << "check (tolerance " << Fixed(100 * kCheckTolerance, 0) << "%):\n"
         << "          s  measured ms    fitted ms    error\n"
         << CheckTable("fit    ", fit_rows) << CheckTable("holdout", held_rows);
  const double w = std::max(WorstError(fit_rows), WorstError(held_rows));
  if (w > kCheckTolerance) {
    report << "check FAILED: worst |error| " << Fixed(100 * w, 2) << "% > "
           << Fixed(100 * kCheckTolerance, 0) << "%\n";
    return kCheckFailed;
  }
  report << "check passed: worst |error| " << Fixed(100 * w, 2) << "%\n";
  return 0;
}

// The profile of checked flags `f`: measure, fit, write the file, report.
int Profile(const ProfileFlags& f) {
  const ProfileSetup s = ResolveSetup(f);
  std::ostream& report0 = f.out_path.empty() ? std::cerr : std::cout;
  Measurements m;
  MeasureLinks(f, s, report0, m);
  // Only rank 0 goes on, unless --concurrent: then every rank times, and rank 0 reports.
  if (m.rank != 0 && !f.concurrent) return 0;
  std::ostringstream discarded;
  std::ostream& report = m.rank == 0 ? report0 : discarded;
  report << "p2p: " << Fixed(m.link.gbps, 2) << " GB/s ("
         << (m.link.ranks == 1 ? "same process: a send to itself"
                               : "ping-pong of ranks 0 and 1 under MPI")
         << ")\n";
  m.copy_gbps = m.rank == 0 ? MeasureCopyGbps(f.reps) : 0.0;
  report << "memcpy (d2h/h2d stand-in): " << Fixed(m.copy_gbps, 2) << " GB/s\n";
  const OffloadConfig& off = s.config.offload;
  if (m.rank == 0 &&
      (off.optimizer == OffloadDevice::kNvme || off.parameters == OffloadDevice::kNvme ||
       off.activations == OffloadDevice::kNvme)) {
    SsdEngineOptions ssd;
    ssd.dir = off.nvme_path;
    ssd.block_bytes = static_cast<size_t>(off.block_size);
    ssd.queue_depth = static_cast<int>(off.queue_depth);
    m.ssd = MeasureSsdBandwidth(ssd);
    report << "ssd (" << off.nvme_path << "): write " << Fixed(m.ssd.write_gbps, 2)
           << " GB/s, read " << Fixed(m.ssd.read_gbps, 2) << " GB/s\n";
  }
  m.load_before = LoadAverage();
  const std::vector<LengthTimes> times = TimeLengths(s, f.reps, report);
  if (m.rank != 0) return 0;  // --concurrent: only rank 0's figures are written
  CollectSamples(times, s.lengths.size(), report, m);
  m.load_after = LoadAverage();
  const scheduler::CostModel model = FitCostModel(s, m);
  const std::string text = CostFileText(f, s, m, model);
  // The written text must be a cost file the planner accepts.
  scheduler::ParseCostModel(text, "profile output");
  WriteCostFile(text, f.out_path, report);
  ReportModel(model, !m.rings.empty(), report);
  return f.check ? ReportCheck(m, model, report) : 0;
}

}  // namespace

int RunProfile(const Args& args) {
  const std::optional<ProfileFlags> flags = ParseProfileFlags(args);
  return flags ? Profile(*flags) : 0;
}

}  // namespace seqmesh::launch
