#include "launch/preflight.h"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <ostream>
#include <sstream>
#include <thread>

#include "launch/format.h"
#include "runtime/check.h"
#include "scheduler/planner.h"
#include "scheduler/step_planner.h"

namespace seqmesh::launch {
namespace {

int Cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

double AvailableBytes() {
  std::ifstream f("/proc/meminfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("MemAvailable:", 0) == 0) return std::atof(line.c_str() + 13) * 1024.0;
  return 0;
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
    const int need = scheduler::ShardSequence(cost, *longest, capacity, false).ring_size;
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

double EstimatedRankBytes(const RunConfig& config, int ranks) {
  const ModelConfig& m = config.model;
  const double p = static_cast<double>(m.NumParams());
  // Parameters and gradients, GradSync's flat gradient and parameter buffers, and this rank's
  // shard of the gradient and the two moments.
  const double state = 4 * p * (4 + 3.0 / ranks);
  const double h = static_cast<double>(m.hidden), ffn = static_cast<double>(m.ffn);
  const double kv = static_cast<double>(m.kv_heads * m.head_dim());
  const double c = static_cast<double>(config.training.micro_batch_tokens);
  // Saved per token and layer: norms, q, k, v, attention out, the FFN's three (fp32); with
  // activation checkpointing, a layer's input per layer and one layer's worth.
  const double per_layer = 4 * (6 * h + 2 * kv + 3 * ffn);
  const double layers = static_cast<double>(m.layers);
  const double acts = config.training.checkpoint_activations ? c * (4 * h * layers + per_layer)
                                                             : c * per_layer * layers;
  const double logits = 2 * 4 * c * static_cast<double>(m.vocab);
  return state + acts + logits;
}

void PreflightJob(const RunConfig& config, const TrainingData& data, const PreflightOptions& o,
                  std::ostream& log) {
  if (o.local) CheckCores(config, o, log);
  CheckLengths(config, data, o.ranks);
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
      << " GiB available: lower training.micro_batch_tokens, set "
         "training.checkpoint_activations = true, or use fewer ranks";
}

}  // namespace seqmesh::launch
