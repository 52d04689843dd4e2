// What a job's step did, from every rank's MetricsReport: the record appended to metrics.jsonl
// and the console line (docs/COORDINATOR.md, "metrics.jsonl").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "proto/coordinator.pb.h"
#include "runtime/json.h"
#include "runtime/model.h"
#include "scheduler/step_planner.h"

namespace seqmesh::launch {

// The step over all ranks, summed in rank order (so the sum is reproducible): the loss shares
// and bytes add up, the step and compute times are the slowest rank's.
struct StepTotals {
  double loss = 0, step_ms = 0, compute_ms = 0;
  uint64_t bytes_sent = 0, micro_batches = 0;
};
StepTotals TotalOf(const std::vector<std::optional<proto::MetricsReport>>& reports);

// The metrics.jsonl record of step `step` (0-based; the record says step + 1, the steps
// completed, as the trainer's do).
// Causal (query, key) pairs of a packed plan: each segment is a document of its own.
double CausalPairs(const proto::StepPlan& plan);
// The model FLOPs of a step of `tokens` tokens planned as `plan`: 6 per matmul parameter and
// token, plus causal attention's 12 x layers x heads x head_dim per (query, key) pair.
// With LoRA (lora.rank >= 1) the frozen base computes no weight gradients: 4 N per token for
// the base (forward and input gradients) plus 6 N_adapters, and attention's as without.
double StepModelFlops(const ModelConfig& m, const proto::StepPlan& plan, int64_t tokens,
                      const LoraConfig& lora);
// The adapter parameters of a LoRA configuration on model m (0 when lora.rank is 0).
int64_t LoraParams(const ModelConfig& m, const LoraConfig& lora);

Json StepRecordJson(uint64_t step, const StepTotals& totals,
                    const std::vector<std::optional<proto::MetricsReport>>& reports,
                    const scheduler::PlannedStep& planned, const std::map<int, double>& refit_scale,
                    uint64_t generation);

// "step: 25  loss: 3.8810  grad_norm: 2.0064  lr: 2.98e-03  tok/s: 8150  sent: 129.4MiB  ..."
std::string ConsoleStepLine(uint64_t steps_done, const StepTotals& totals,
                            const proto::MetricsReport& rank0, double tokens_per_s);

// "offload_read_bytes", "offload_written_bytes", "offload_gib_per_s", "offload_overlap",
// "offload_ms", "vm_hwm_mib", "vm_lck_mib" added to a metrics.jsonl record (`train`'s, or a
// job's from its ranks' reports: bytes summed, GiB/s over the slowest rank's I/O time, the
// lowest overlap, the highest VmHWM and VmLck, and per rank as rank_vm_hwm_mib).
void AddOffloadFields(const proto::OffloadReport& f, Json& record);
void AddOffloadFields(const std::vector<std::optional<proto::MetricsReport>>& reports,
                      Json& record);
// "  ssd: 1.2GiB in 1.2GiB out 1.41GiB/s overlap 0.93  hwm: 812MiB  locked: 72MiB"
std::string OffloadConsoleText(const proto::OffloadReport& f);

// 1023B, 1.5KiB, 129.4MiB, 2.25GiB
std::string Bytes(double b);

}  // namespace seqmesh::launch
