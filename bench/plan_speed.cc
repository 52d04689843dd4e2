// Planning time of one step at cluster scale (issue 5: 12,288 ranks, 32M tokens, < 200 ms).
// Prints one line per figure: median over steps of the balanced planner alone, and with the
// StepPlan conversion and validation, against the 200 ms anchor.
//
//   plan_speed [cost_file] [ranks] [steps]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "scheduler/length_distribution.h"
#include "scheduler/plan_validator.h"
#include "scheduler/planner.h"

using namespace seqmesh::scheduler;

int main(int argc, char** argv) {
  const std::string cost_path = argc > 1 ? argv[1] : "scheduler/costs/h100-like.cost";
  const int ranks = argc > 2 ? std::stoi(argv[2]) : 12288;
  const int steps = argc > 3 ? std::stoi(argv[3]) : 9;
  const CostModel cost = LoadCostModel(cost_path);
  const double anchor_ms = 200;
  for (const char* dist : {"byted-like", "github-like"}) {
    auto lengths = LengthDistribution::Named(dist);
    std::vector<double> plan_ms, full_ms;
    for (int k = 0; k < steps; ++k) {
      auto batch = lengths.DrawBatch(32ll << 20, 2ll << 20, k);
      PlannerOptions o{ranks, 8192, 2ll << 20, false, true};
      auto t0 = std::chrono::steady_clock::now();
      Plan plan = PlanBalanced(cost, batch, o);
      auto t1 = std::chrono::steady_clock::now();
      auto proto = ToStepPlan(cost, plan, k);
      CheckStepPlan(proto);
      auto t2 = std::chrono::steady_clock::now();
      plan_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      full_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t0).count());
    }
    std::sort(plan_ms.begin(), plan_ms.end());
    std::sort(full_ms.begin(), full_ms.end());
    double p = plan_ms[steps / 2], f = full_ms[steps / 2];
    std::printf(
        "plan_speed %s ranks=%d tokens=32M context=2M: balanced plan %.1f ms "
        "(%.2fx of %.0f ms anchor), plan+StepPlan+validate %.1f ms (%.2fx)\n",
        dist, ranks, p, p / anchor_ms, anchor_ms, f, f / anchor_ms);
  }
  return 0;
}
