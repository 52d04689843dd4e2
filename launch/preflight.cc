#include "launch/preflight.h"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <ostream>
#include <sstream>
#include <thread>

#include "launch/activation_offload_setup.h"
#include "launch/format.h"
#include "offload/optimizer_store.h"
#include "runtime/check.h"
#include "runtime/model.h"
#include "scheduler/planner.h"
#include "scheduler/step_planner.h"

namespace seqmesh::launch {
namespace {

int Cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// A number from a cgroup file ("max" and a missing file: -1).
double CgroupValue(const std::string& path) {
  std::ifstream f(path);
  std::string v;
  if (!(f >> v) || v == "max") return -1;
  return std::atof(v.c_str());
}

// The value of `key` in a cgroup's memory.stat (0 if absent).
double CgroupStat(const std::string& dir, const std::string& key) {
  std::ifstream f(dir + "/memory.stat");
  std::string k;
  double v = 0;
  while (f >> k >> v)
    if (k == key) return v;
  return 0;
}

// What this process's memory cgroup and its ancestors still allow (limit - usage + the
// reclaimable file cache), the smallest over the hierarchy; -1 without a limit. cgroup v1
// (memory.limit_in_bytes) and v2 (memory.max).
double CgroupAvailableBytes() {
  std::ifstream f("/proc/self/cgroup");
  double best = -1;
  for (std::string line; std::getline(f, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const bool v1 = controllers == "memory", v2 = line.rfind("0::", 0) == 0;
    if (!v1 && !v2) continue;
    const std::string root = v1 ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup";
    for (std::string path = line.substr(b + 1);; path = path.substr(0, path.rfind('/'))) {
      const std::string dir = root + path;
      const double limit = CgroupValue(dir + (v1 ? "/memory.limit_in_bytes" : "/memory.max"));
      const double used = CgroupValue(dir + (v1 ? "/memory.usage_in_bytes" : "/memory.current"));
      // v1 reports "no limit" as a huge number.
      if (limit > 0 && limit < 1e18 && used >= 0) {
        const double cache = CgroupStat(dir, v1 ? "total_inactive_file" : "inactive_file");
        const double room = std::max(0.0, limit - used + cache);
        best = best < 0 ? room : std::min(best, room);
      }
      if (path.empty() || path == "/") break;
    }
  }
  return best;
}

void CheckCores(const RunConfig& config, const PreflightOptions& o, std::ostream& log) {
  const int cores = Cores();
  const int64_t threads = o.ranks * config.training.threads;
  SM_CHECK(o.oversubscribe || o.ranks <= 4 * cores)
      << "launch: -n " << o.ranks << " is more ranks than this machine can hold (" << cores
      << " cores: at most " << 4 * cores
      << " without --oversubscribe); use fewer ranks, or pass --oversubscribe";
  if (threads > cores)
    log << "launch: warning: " << o.ranks << " ranks x " << config.training.threads
        << " thread(s) on " << cores << " cores: oversubscribed, each step runs slower"
        << std::endl;
}

// The longest sequence must fit the world's rings; a world of one cuts it instead.
void CheckLengths(const RunConfig& config, const TrainingData& data, int ranks) {
  if (ranks == 1) return;
  const scheduler::CostModel cost = scheduler::PlannerCostModel(config);
  const int64_t capacity = config.training.micro_batch_tokens;
  for (size_t d = 0; d < data.datasets.size(); ++d) {
    const std::vector<int32_t>& lengths = data.datasets[d].lengths();
    const auto longest = std::max_element(lengths.begin(), lengths.end());
    if (longest == lengths.end()) continue;
    // With distributed.offload, the fewest ranks Eq. 3 allows at any bandwidth (the planner
    // checks the overlap condition at the coordinator).
    const bool offload = config.distributed.offload;
    const int need =
        scheduler::ShardSequence(cost, *longest, capacity, offload, offload ? 1e9 : 0).ring_size;
    SM_CHECK(need <= ranks) << "sequence " << (longest - lengths.begin()) << " of dataset '"
                            << data.prefixes[d] << "' has " << *longest << " tokens and needs "
                            << need << " ranks of "
                            << "training.micro_batch_tokens = " << capacity << "; the job has "
                            << ranks << ": re-run prep with --max-length " << ranks * capacity
                            << " or raise training.micro_batch_tokens (or use more ranks)";
  }
}

// Every token id must be below model.vocab (the embedding has no row for it).
void CheckTokens(const RunConfig& config, const TrainingData& data) {
  const int64_t vocab = config.model.vocab;
  std::vector<int32_t> tokens;
  for (size_t d = 0; d < data.datasets.size(); ++d) {
    const IndexedDataset& ds = data.datasets[d];
    if (ds.dtype() == TokenDType::kU8 && vocab >= 256) continue;  // every id fits
    if (ds.dtype() == TokenDType::kU16 && vocab >= 65536) continue;
    const std::optional<DatasetCard>& card = data.cards[d];
    if (card && card->tokens == ds.num_tokens() && card->documents == ds.num_sequences()) {
      // prep recorded the largest id (a card that does not match the files is ignored)
      SM_CHECK(card->max_token_id < vocab)
          << "dataset '" << data.prefixes[d] << "' holds token ids up to " << card->max_token_id
          << " (" << card->tokenizer.Describe() << "), outside model.vocab = " << vocab
          << ": prepare the data with the model's tokenizer, or raise model.vocab";
      continue;
    }
    for (int64_t s = 0; s < ds.num_sequences(); ++s) {
      tokens.clear();
      ds.Read(s, tokens);
      const auto top = std::max_element(tokens.begin(), tokens.end());
      SM_CHECK(top == tokens.end() || (*top >= 0 && *top < vocab))
          << "dataset '" << data.prefixes[d] << "' sequence " << s << " holds token id " << *top
          << ", outside model.vocab = " << vocab
          << ": prepare the data with the model's tokenizer, or raise model.vocab";
    }
  }
}

}  // namespace

double AvailableBytes() {
  double have = 0;
  std::ifstream f("/proc/meminfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("MemAvailable:", 0) == 0) have = std::atof(line.c_str() + 13) * 1024.0;
  const double cgroup = CgroupAvailableBytes();
  return cgroup >= 0 && (have <= 0 || cgroup < have) ? cgroup : have;
}

void CheckModelTokenizer(const std::string& prefix, const DatasetCard& card,
                         const std::string& model_dir, const std::string& flag,
                         int64_t model_vocab) {
  const std::string file = TokenizerFileIn(model_dir);
  const TokenizerIdentity& made = card.tokenizer;
  const std::string fix =
      ": prepare the data with the model's tokenizer (seqmesh prep "
      "--tokenizer " +
      model_dir + " ...)";
  if (!file.empty()) {
    const TokenizerIdentity model = IdentifyTokenizerFile(file);
    SM_CHECK(made.SameAs(model)) << "dataset '" << prefix << "' was tokenized with "
                                 << made.Describe() << ", but " << flag << " " << model_dir
                                 << " ships " << model.kind << " '" << file << "'" << fix;
  }
  SM_CHECK(made.vocab_size <= model_vocab &&
           (!file.empty() || model_vocab - made.vocab_size < 1024))
      << "dataset '" << prefix << "' was tokenized with " << made.Describe()
      << ", but the model in " << flag << " " << model_dir << " has vocab_size " << model_vocab
      << fix;
}

void CheckInitFromTokenizer(const TrainingData& data, const std::string& init_from,
                            int64_t model_vocab) {
  for (size_t d = 0; d < data.cards.size(); ++d) {
    if (data.cards[d])
      CheckModelTokenizer(data.prefixes[d], *data.cards[d], init_from, "--init-from", model_vocab);
  }
}

double EstimatedStateBytes(const RunConfig& config, int ranks) {
  const ModelConfig& m = config.model;
  const double p = static_cast<double>(m.NumParams());
  const OffloadConfig& off = config.offload;
  const bool one_micro_batch =
      config.training.global_batch_tokens <= config.training.micro_batch_tokens;
  double state = 0;
  // The model's weights: all of them, or, offloaded, about two groups resident and two staging
  // buffers of the largest (a layer, or the embedding: vocab x hidden).
  const double layer =
      static_cast<double>(m.NumParams() - m.vocab * m.hidden * (m.tie_embeddings ? 1 : 2)) /
      static_cast<double>(std::max<int64_t>(1, m.layers));
  const double largest = std::max(layer, static_cast<double>(m.vocab * m.hidden));
  const double weights =
      off.parameters == OffloadDevice::kNvme ? 4 * (2 * layer + 2 * largest) : 4 * p;
  if (ranks == 1) {
    // Parameters and gradients (the shard is the model itself), and the moments unless
    // offloaded; an SSD store that holds the gradients gives them back as backward finishes,
    // when a step is one micro-batch (about a layer's are resident then, counted as 1/layers).
    const bool handed_off = off.optimizer == OffloadDevice::kNvme && one_micro_batch;
    state = weights + 4 * p * (handed_off ? 2.0 / std::max<int64_t>(1, m.layers) : 1.0);
    if (off.optimizer == OffloadDevice::kNone) state += 8 * p;
  } else {
    // Parameters and gradients, GradSync's flat gradient and parameter buffers, and this rank's
    // shard of the gradient and (unless offloaded) of the two moments.
    state = weights + 4 * p * (3 + (off.optimizer == OffloadDevice::kNone ? 3.0 : 1.0) / ranks);
  }
  state += static_cast<double>(OffloadedOptimizerStateStore::ArenaBytes(
      static_cast<int64_t>(p / ranks), off, ranks == 1 && off.optimizer == OffloadDevice::kNvme));
  // The head's logits: a buffer of at most 64 MiB of rows (Model::HeadChunkTokens), counted
  // twice as the whole pass's logits were before the head went in chunks.
  const double rows = static_cast<double>(Model::HeadChunkTokens(m, ActivationRowsFor(config)));
  const double logits = 2 * 4 * rows * static_cast<double>(m.vocab);
  return state + logits;
}

double EstimatedRankBytes(const RunConfig& config, int ranks) {
  return EstimatedStateBytes(config, ranks) +
         EstimatedActivationBytes(config, config.training.micro_batch_tokens);
}

void PreflightJob(const RunConfig& config, const TrainingData& data, const PreflightOptions& o,
                  std::ostream& log) {
  if (o.local) CheckCores(config, o, log);
  CheckLengths(config, data, o.ranks);
  // The tokenizer first: a mismatch explains the out-of-range ids it causes.
  if (!o.init_from.empty()) CheckInitFromTokenizer(data, o.init_from, config.model.vocab);
  CheckTokens(config, data);
  if (!o.local) return;
  const double need = o.ranks * EstimatedRankBytes(config, o.ranks), have = AvailableBytes();
  const double gib = 1024.0 * 1024 * 1024;
  SM_CHECK(have <= 0 || need <= have)
      << "the job needs about " << Fixed(need / gib, 1) << " GiB (" << o.ranks << " rank(s) x "
      << Fixed(need / o.ranks / gib, 2)
      << " GiB: parameters, gradients, optimizer state and the activations of "
         "training.micro_batch_tokens = "
      << config.training.micro_batch_tokens << "), but this machine has " << Fixed(have / gib, 1)
      << " GiB available (the smaller of MemAvailable and the memory cgroup's room): "
      << (config.offload.optimizer == OffloadDevice::kNone
              ? "offload the optimizer state (offload.optimizer = \"nvme\", docs/OFFLOAD.md), "
          : config.offload.parameters == OffloadDevice::kNone && o.ranks == 1
              ? "offload the parameters too (offload.parameters = \"nvme\", docs/OFFLOAD.md), "
              : "")
      << "lower training.micro_batch_tokens, "
      << (config.training.checkpoint_activations == CheckpointMode::kOff
              ? "set training.checkpoint_activations = true, "
              : "")
      << (config.offload.activations == OffloadDevice::kNone
              ? "offload the checkpointed activations (offload.activations = \"nvme\"), "
              : "")
      << "or use fewer ranks";
}

}  // namespace seqmesh::launch
