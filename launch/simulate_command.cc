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
#include "launch/flags.h"
#include "launch/machine.h"
#include "runtime/check.h"
#include "scheduler/cost_model.h"
#include "scheduler/gantt.h"
#include "scheduler/length_distribution.h"
#include "scheduler/plan_validator.h"
#include "scheduler/planner.h"

namespace seqmesh::launch {
namespace {

struct Figures {
  double step = 0, bound = 0, speedup = 0, busy = 0, exposed = 0, plan_ms = 0;
};

// The mean of each planner's figures over `k` batches: a table, or one JSON object per planner.
void PrintFigures(const std::vector<std::string>& planners, std::map<std::string, Figures>& sum,
                  double k, bool json) {
  if (!json)
    std::printf("%-9s %12s %12s %8s %6s %8s %9s\n", "planner", "step_ms", "bound_ms", "vs_static",
                "busy", "exp_comm", "plan_ms");
  for (const std::string& name : planners) {
    Figures f = sum[name];
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
}

}  // namespace

int RunSimulate(const Args& args) {
  bool json = false;
  scheduler::PlannerOptions options;
  int64_t ranks = 0, batch_tokens = 0, seeds = 5;
  std::string lengths_arg, cost_file, gantt, planner_list = "static,naive,pow2,balanced";
  bool no_widen = false;
  FlagParser flags("simulate",
                   "plan simulated global batches with every planner and compare step times",
                   "seqmesh simulate --ranks 1024 --capacity 8K --batch-tokens 32M --context 1M "
                   "--lengths github-like --cost scheduler/costs/h100-like.cost --seeds 5");
  flags.Size("--ranks", "N", &ranks, "ranks of the simulated job", Required::kYes)
      .Size("--capacity", "C", &options.capacity, "tokens per rank", Required::kYes)
      .Size("--batch-tokens", "B", &batch_tokens, "tokens per global batch", Required::kYes)
      .Size("--context", "L", &options.context, "the static mesh's pack length (>= C)",
            Required::kYes)
      .String("--lengths", "NAME|FILE|INDEX.idx", &lengths_arg,
              "byted-like, github-like, a lengths file (`upper_bound probability` or `=tokens "
              "probability` per line) or a Megatron .idx index",
              Required::kYes)
      .String("--cost", "FILE", &cost_file, "the cost model (seqmesh profile writes one)",
              Required::kYes)
      .Size("--seeds", "K", &seeds, "global batches drawn")
      .Switch("--json", &json, "one JSON object per planner instead of the table")
      .String("--gantt", "FILE", &gantt, "an SVG of the balanced plan of the first batch")
      .Switch("--offload", &options.offload, "selective offload shrinks rings (Eq. 3)")
      .Switch("--no-widen", &no_widen, "balanced: never widen rings past the minimum")
      .String("--planners", "a,b,...", &planner_list, "the planners to compare");
  if (!flags.Parse(args)) return 0;
  if (no_widen) options.widen = false;
  SM_CHECK(ranks <= (1 << 20)) << "--ranks " << ranks << " is too large";
  options.num_ranks = static_cast<int>(ranks);
  SM_CHECK(options.context >= options.capacity)
      << "--context " << options.context << " must be >= --capacity " << options.capacity;
  const auto cost = scheduler::LoadCostModel(cost_file);
  {
    // The CPU, ISA and GPU decide the costs; threads and ranks are the profile's own setting.
    scheduler::MachineInfo here = ThisMachine(cost.machine.threads, cost.machine.ranks);
    const std::string warning = CostFileMachineWarning(cost, cost_file, here);
    if (!warning.empty()) std::cerr << "simulate: " << warning << std::endl;
  }
  const auto lengths = scheduler::LengthDistribution::FromArgument(lengths_arg);
  std::vector<std::string> planners;
  std::stringstream list(planner_list);
  for (std::string p; std::getline(list, p, ',');) planners.push_back(p);

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
      if (seed == 0 && name == "balanced" && !gantt.empty()) {
        std::ofstream out(gantt);
        SM_CHECK(out.good()) << "cannot write " << gantt;
        out << scheduler::GanttSvg(cost, plan);
      }
    }
  }
  PrintFigures(planners, sum, static_cast<double>(seeds), json);
  return 0;
}

}  // namespace seqmesh::launch
