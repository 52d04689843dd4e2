// `seqmesh simulate`: draws K global batches from a length distribution, plans each with every
// planner, replays the plans under a cost model, and prints the mean of each planner's figures.
//
//   seqmesh simulate --ranks 1024 --capacity 8K --batch-tokens 32M --context 1M
//       --lengths byted-like --cost scheduler/costs/h100-like.cost --seeds 5 [--json]
//       [--gantt out.svg] [--offload] [--no-widen] [--planners static,naive,pow2,balanced]
//
// Sizes take the suffixes K (2^10) and M (2^20).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "launch/command.h"
#include "runtime/check.h"
#include "scheduler/cost_model.h"
#include "scheduler/gantt.h"
#include "scheduler/length_distribution.h"
#include "scheduler/plan_validator.h"
#include "scheduler/planner.h"

namespace seqmesh::launch {
namespace {

constexpr char kHelp[] =
    "usage: seqmesh simulate --ranks N --capacity C --batch-tokens B --context L\n"
    "           --lengths NAME|FILE|INDEX.idx --cost FILE [--seeds K] [--json]\n"
    "           [--gantt out.svg] [--offload] [--no-widen] [--planners a,b,...]\n"
    "  --lengths  byted-like, github-like, a lengths file (`upper_bound probability` or\n"
    "             `=tokens probability` per line) or a Megatron .idx index\n"
    "  sizes accept K (1024) and M (1048576) suffixes\n";

int64_t ParseSize(const std::string& flag, const std::string& v) {
  SM_CHECK(!v.empty()) << flag << " needs a value";
  int64_t mult = 1;
  std::string digits = v;
  char last = v.back();
  if (last == 'K' || last == 'k') mult = 1024;
  if (last == 'M' || last == 'm') mult = 1024 * 1024;
  if (mult != 1) digits.pop_back();
  char* end = nullptr;
  long long n = std::strtoll(digits.c_str(), &end, 10);
  SM_CHECK(!digits.empty() && *end == '\0') << flag << ": '" << v << "' is not a size";
  SM_CHECK(n > 0) << flag << " must be > 0, got " << v;
  return n * mult;
}

struct Figures {
  double step = 0, bound = 0, speedup = 0, busy = 0, exposed = 0, plan_ms = 0;
};

}  // namespace

int RunSimulate(const Args& args) {
  std::map<std::string, std::string> flags;
  bool json = false;
  scheduler::PlannerOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << kHelp;
      return 0;
    }
    if (a == "--json") {
      json = true;
      continue;
    }
    if (a == "--offload") {
      options.offload = true;
      continue;
    }
    if (a == "--no-widen") {
      options.widen = false;
      continue;
    }
    static const char* kValued[] = {"--ranks",   "--capacity", "--batch-tokens",
                                    "--context", "--lengths",  "--cost",
                                    "--seeds",   "--gantt",    "--planners"};
    bool known = false;
    for (const char* k : kValued) known |= a == k;
    SM_CHECK(known) << "unknown flag '" << a << "'\n" << kHelp;
    SM_CHECK(i + 1 < args.size()) << a << " needs a value";
    flags[a] = args[++i];
  }
  for (const char* required :
       {"--ranks", "--capacity", "--batch-tokens", "--context", "--lengths", "--cost"})
    SM_CHECK(flags.count(required)) << "missing " << required << "\n" << kHelp;
  const int64_t ranks = ParseSize("--ranks", flags["--ranks"]);
  SM_CHECK(ranks <= (1 << 20)) << "--ranks " << ranks << " is too large";
  options.num_ranks = static_cast<int>(ranks);
  options.capacity = ParseSize("--capacity", flags["--capacity"]);
  options.context = ParseSize("--context", flags["--context"]);
  const int64_t batch_tokens = ParseSize("--batch-tokens", flags["--batch-tokens"]);
  const int seeds = flags.count("--seeds") ? ParseSize("--seeds", flags["--seeds"]) : 5;
  SM_CHECK(options.context >= options.capacity)
      << "--context " << options.context << " must be >= --capacity " << options.capacity;
  const auto cost = scheduler::LoadCostModel(flags["--cost"]);
  const auto lengths = scheduler::LengthDistribution::FromArgument(flags["--lengths"]);
  std::vector<std::string> planners = {"static", "naive", "pow2", "balanced"};
  if (flags.count("--planners")) {
    planners.clear();
    std::stringstream list(flags["--planners"]);
    for (std::string p; std::getline(list, p, ',');) planners.push_back(p);
  }

  // The static mesh runs first on every batch, wherever the list puts it: the others' speedup
  // is against its step (listed before it, they had printed 0.00x).
  std::vector<std::string> order = planners;
  std::stable_partition(order.begin(), order.end(),
                        [](const std::string& p) { return p == "static"; });
  std::map<std::string, Figures> sum;
  for (int seed = 0; seed < seeds; ++seed) {
    auto batch = lengths.DrawBatch(batch_tokens, options.context, seed);
    double static_step = 0;
    for (const std::string& name : order) {
      auto t0 = std::chrono::steady_clock::now();
      auto plan = scheduler::PlanByName(name, cost, batch, options);
      double plan_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      auto m = scheduler::Simulate(cost, plan);
      scheduler::CheckStepPlan(scheduler::ToStepPlan(cost, plan, seed));
      if (name == "static") static_step = m.step_ms;
      Figures& f = sum[name];
      f.step += m.step_ms;
      f.bound += plan.lower_bound_ms;
      f.speedup += static_step > 0 ? static_step / m.step_ms : 0;
      f.busy += m.busy_fraction;
      f.exposed += m.exposed_comm_fraction;
      f.plan_ms += plan_ms;
      if (seed == 0 && name == "balanced" && flags.count("--gantt")) {
        std::ofstream out(flags["--gantt"]);
        SM_CHECK(out.good()) << "cannot write " << flags["--gantt"];
        out << scheduler::GanttSvg(cost, plan);
      }
    }
  }
  if (!json)
    std::printf("%-9s %12s %12s %8s %6s %8s %9s\n", "planner", "step_ms", "bound_ms", "vs_static",
                "busy", "exp_comm", "plan_ms");
  for (const std::string& name : planners) {
    Figures f = sum[name];
    const double k = seeds;
    const bool has_static = sum.count("static") > 0;
    if (json) {
      std::printf(
          "{\"planner\": \"%s\", \"step_ms\": %.3f, \"lower_bound_ms\": %.3f, "
          "\"speedup_vs_static\": %s, \"busy_fraction\": %.4f, \"exposed_comm_fraction\": %.4f, "
          "\"plan_ms\": %.3f}\n",
          name.c_str(), f.step / k, f.bound / k,
          has_static ? std::to_string(f.speedup / k).c_str() : "null", f.busy / k, f.exposed / k,
          f.plan_ms / k);
    } else {
      std::printf("%-9s %12.1f %12.1f %8.2fx %6.3f %8.3f %9.2f\n", name.c_str(), f.step / k,
                  f.bound / k, has_static ? f.speedup / k : 0.0, f.busy / k, f.exposed / k,
                  f.plan_ms / k);
    }
  }
  return 0;
}

}  // namespace seqmesh::launch
