// Plan quality on hard length mixtures (issue 15, item 4): large atoms exactly at the context
// length beside short documents. Prints one line per (mixture, ranks, context): the balanced
// planner's step and the lower bound, mean over seeds, and their ratio (the anchor: 1.0).
//
//   plan_quality [cost_file] [seeds]
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "scheduler/exact_plan.h"
#include "scheduler/length_distribution.h"
#include "scheduler/planner.h"

using namespace seqmesh::scheduler;

namespace {

struct Mixture {
  const char* name;
  const char* shorts;  // a lengths file's buckets, probabilities summing to 1 - atom
  double atom;         // share of sequences exactly at the context length
};

// byted-like's buckets up to C = 8K, and github-like's up to 64K (DESIGN.md), each rescaled.
const Mixture kMixtures[] = {
    {"byted8K+5%L", "1024 .15\n2048 .30\n4096 .35\n8192 .09\n", 0.05},
    {"byted8K+3%L", "1024 .15\n2048 .30\n4096 .35\n8192 .09\n", 0.03},
    {"github64K+4%L", "1024 .40\n2048 .20\n4096 .18\n8192 .13\n16384 .06\n32768 .018\n65536 .007\n",
     0.04},
};

LengthDistribution MixtureAt(const Mixture& m, int64_t context) {
  std::string text;
  double total = 0;
  std::vector<std::pair<std::string, double>> rows;
  for (size_t b = 0, e; b < std::string(m.shorts).size(); b = e + 1) {
    e = std::string(m.shorts).find('\n', b);
    std::string line = std::string(m.shorts).substr(b, e - b);
    auto sp = line.find(' ');
    rows.push_back({line.substr(0, sp), std::stod(line.substr(sp + 1))});
    total += rows.back().second;
  }
  for (auto& [bound, p] : rows)
    text += bound + " " + std::to_string(p / total * (1 - m.atom)) + "\n";
  text += "=" + std::to_string(context) + " " + std::to_string(m.atom) + "\n";
  return LengthDistribution::ParseLengthsText(text, m.name);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cost_path = argc > 1 ? argv[1] : "scheduler/costs/h100-like.cost";
  const int seeds = argc > 2 ? std::stoi(argv[2]) : 5;
  const CostModel cost = LoadCostModel(cost_path);
  const int64_t capacity = 8192;
  for (const Mixture& m : kMixtures) {
    for (int ranks : {64, 256, 1024}) {
      for (int64_t context : {256ll << 10, 512ll << 10, 1ll << 20, 2ll << 20}) {
        if (context / capacity > ranks) continue;
        auto dist = MixtureAt(m, context);
        double step = 0, bound = 0, worst = 0;
        for (int seed = 0; seed < seeds; ++seed) {
          auto batch = dist.DrawBatch(int64_t{ranks} * 32768, context, seed);
          PlannerOptions o{ranks, capacity, context, false, true};
          Plan plan = PlanBalanced(cost, batch, o);
          double s = Simulate(cost, plan).step_ms;
          step += s / seeds;
          bound += plan.lower_bound_ms / seeds;
          worst = std::max(worst, s / plan.lower_bound_ms);
        }
        std::printf(
            "plan_quality %s ranks=%d context=%lldK: balanced %.1f ms, bound %.1f ms, "
            "balanced/bound %.3f (worst seed %.3f)\n",
            m.name, ranks, static_cast<long long>(context >> 10), step, bound, step / bound, worst);
      }
    }
  }
  // The reference rows (docs/BENCHMARKS.md's HDP table): 1,024 ranks, 32M tokens.
  for (const char* name : {"byted-like", "github-like"}) {
    for (int64_t context : {256ll << 10, 512ll << 10, 1ll << 20, 2ll << 20}) {
      auto dist = LengthDistribution::Named(name);
      double step = 0, bound = 0;
      for (int seed = 0; seed < seeds; ++seed) {
        auto batch = dist.DrawBatch(32ll << 20, context, seed);
        Plan plan = PlanBalanced(cost, batch, {1024, capacity, context, false, true});
        step += Simulate(cost, plan).step_ms / seeds;
        bound += plan.lower_bound_ms / seeds;
      }
      std::printf(
          "plan_quality %s ranks=1024 context=%lldK: balanced %.1f ms, bound %.1f ms, "
          "balanced/bound %.3f\n",
          name, static_cast<long long>(context >> 10), step, bound, step / bound);
    }
  }
  // Small cases for the exact planner: 4 to 12 ranks, 1.5 waves of tokens, 15% atoms at L.
  const Mixture small = {"byted8K+15%L", kMixtures[0].shorts, 0.15};
  for (int ranks : {4, 8, 12}) {
    for (int64_t context : {16ll << 10, 32ll << 10}) {
      auto dist = MixtureAt(small, context);
      double step = 0, exact = 0, worst_ms = 0, sequences = 0;
      int optimal = 0;
      for (int seed = 0; seed < seeds; ++seed) {
        auto batch = dist.DrawBatch(int64_t{ranks} * 3 * capacity / 2, context, seed);
        sequences += static_cast<double>(batch.size()) / seeds;
        Plan plan = PlanBalanced(cost, batch, {ranks, capacity, context, false, true});
        auto t0 = std::chrono::steady_clock::now();
        ExactResult r = PlanExact(cost, batch, {ranks, capacity, 2'000'000});
        worst_ms = std::max(worst_ms, std::chrono::duration<double, std::milli>(
                                          std::chrono::steady_clock::now() - t0)
                                          .count());
        optimal += r.optimal;
        step += Simulate(cost, plan).step_ms / plan.lower_bound_ms / seeds;
        exact += r.step_ms / plan.lower_bound_ms / seeds;
      }
      std::printf(
          "plan_quality exact %s ranks=%d context=%lldK (%.1f sequences): "
          "balanced/bound %.3f, exact/bound %.3f, balanced/exact %.3f, %d of %d proven "
          "optimal, slowest search %.0f ms\n",
          small.name, ranks, static_cast<long long>(context >> 10), sequences, step, exact,
          step / exact, optimal, seeds, worst_ms);
    }
  }
  return 0;
}
