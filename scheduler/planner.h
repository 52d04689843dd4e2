// The HDP planner (ByteScale Alg. 1 and 2, DESIGN.md section 4) and the baselines it is measured
// against, all on the same cost model:
//   static   - DP x CP mesh: packs of context L zigzagged over d_cp = L/C ranks, round-robin to
//              the d_dp = N/d_cp groups;
//   naive    - HDP without balance (Alg. 1): minimal rings, arrival order, ranks filled by id;
//   pow2     - Megatron-style dynamic CP: ring sizes rounded up to powers of two on aligned rank
//              blocks, cost-sorted, least-loaded block;
//   balanced - HDP with DP-Balance and ring widening (docs/PLANNER.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/run_config.h"
#include "scheduler/cost_model.h"
#include "scheduler/plan.h"

namespace seqmesh::scheduler {

struct PlannerOptions {
  int num_ranks = 0;
  int64_t capacity = 0;  // C, tokens per rank
  int64_t context = 0;   // L, the static mesh's pack length
  bool offload = false;  // Eq. 3 selective offload shrinks rings (balanced and naive)
  // The offload target's bandwidth for the overlap condition (the SSD's min(write, read) with
  // offload.activations = "nvme"); 0: min(d2h_gbps, h2d_gbps) of the cost file.
  double offload_gbps = 0;
  bool widen = true;  // balanced: widen critical rings past the minimum
};

// Data-aware sharding: the ring size of a sequence and its offload ratio.
struct Shard {
  int ring_size = 1;
  double offload_ratio = 0;
};
// Smallest D whose zigzag chunks hold at most C tokens per rank; with `offload`, Eq. 3: the
// largest ratio the overlap condition T(s) >= r Act(s) / B allows (B = offload_gbps, or
// min(B_d2h, B_h2d) when 0), and the smallest D whose resident tokens c (2 + (1-r)(l-2)) / l
// fit in C (r then lowered to the least that still fits). Ratios are multiples of 1 / (l - 2)
// (whole layers leave: Model::OffloadedLayersFor): the overlap bound rounds down, the least
// fitting ratio up.
Shard ShardSequence(const CostModel& cost, int64_t length, int64_t capacity, bool offload,
                    double offload_gbps = 0);

// Best-fit packing of sequences (each <= capacity) into bins of `capacity`; returns the bins as
// lists of indices into `sizes`. `decreasing` sorts by size first (best-fit decreasing);
// otherwise sequences are taken in the given order (online best-fit).
std::vector<std::vector<int32_t>> BestFitPack(const std::vector<int32_t>& ids,
                                              const std::vector<int64_t>& sizes, int64_t capacity,
                                              bool decreasing);

// max over D of ... see docs/PLANNER.md: min_D max(t(s*, D), (W - T(s*) + D t(s*, D)) / N) where
// s* is the longest sequence and W the total compute; never below max(W / N, min_D t(s*, D)).
double LowerBoundMs(const CostModel& cost, const std::vector<int64_t>& lengths, int num_ranks);

Plan PlanStatic(const CostModel& cost, const std::vector<int64_t>& lengths,
                const PlannerOptions& options);
Plan PlanNaive(const CostModel& cost, const std::vector<int64_t>& lengths,
               const PlannerOptions& options);
Plan PlanPow2(const CostModel& cost, const std::vector<int64_t>& lengths,
              const PlannerOptions& options);
Plan PlanBalanced(const CostModel& cost, const std::vector<int64_t>& lengths,
                  const PlannerOptions& options);

Plan PlanWith(PlannerKind planner, const CostModel& cost, const std::vector<int64_t>& lengths,
              const PlannerOptions& options);
// "static", "naive", "pow2" or "balanced" (a name from the command line: parsed, then PlanWith).
Plan PlanByName(const std::string& planner, const CostModel& cost,
                const std::vector<int64_t>& lengths, const PlannerOptions& options);

}  // namespace seqmesh::scheduler
