#include "launch/step_metrics.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "launch/format.h"
#include "launch/metrics_file.h"

namespace seqmesh::launch {
namespace {

// JSON cannot hold NaN or infinity (a diverged loss): those are written as null.
Json NumberOrNull(double v) { return std::isfinite(v) ? Json::Number(v) : Json(); }

}  // namespace

std::string Bytes(double b) {
  if (b < 1024) return Fixed(b, 0) + "B";
  if (b < 1024.0 * 1024) return Fixed(b / 1024, 1) + "KiB";
  if (b < 1024.0 * 1024 * 1024) return Fixed(b / (1024.0 * 1024), 1) + "MiB";
  return Fixed(b / (1024.0 * 1024 * 1024), 2) + "GiB";
}

StepTotals TotalOf(const std::vector<std::optional<proto::MetricsReport>>& reports) {
  StepTotals t;
  for (const auto& r : reports) {
    t.loss += r->loss();
    t.step_ms = std::max(t.step_ms, r->step_ms());
    t.compute_ms = std::max(t.compute_ms, r->compute_ms());
    t.bytes_sent += r->bytes_sent();
    t.micro_batches += r->micro_batches();
  }
  return t;
}

Json StepRecordJson(uint64_t step, const StepTotals& totals,
                    const std::vector<std::optional<proto::MetricsReport>>& reports,
                    const scheduler::PlannedStep& planned, const std::map<int, double>& refit_scale,
                    uint64_t generation) {
  Json rank_loss = Json::Array(), rank_ms = Json::Array(), rank_bytes = Json::Array(),
       rank_mb = Json::Array(), rank_mem = Json::Array();
  for (const auto& r : reports) {
    rank_loss.Push(NumberOrNull(r->loss()));
    rank_ms.Push(NumberOrNull(r->step_ms()));
    rank_bytes.Push(Json::Integer(static_cast<int64_t>(r->bytes_sent())));
    rank_mb.Push(Json::Integer(r->micro_batches()));
    rank_mem.Push(NumberOrNull(r->rss_mib()));
  }
  // After gradient sync every rank holds the same norm and learning rate; rank 0's are logged.
  const proto::MetricsReport& first = *reports[0];
  const double tok_s = totals.step_ms > 0 ? planned.tokens / (totals.step_ms / 1e3) : 0.0;
  Json line = Json::Object();
  line.Set("step", Json::Integer(static_cast<int64_t>(step + 1)));
  line.Set("loss", NumberOrNull(totals.loss));
  line.Set("grad_norm", NumberOrNull(first.grad_norm()));
  line.Set("lr", NumberOrNull(first.lr()));
  line.Set("tokens", Json::Integer(planned.tokens));
  line.Set("target_tokens", Json::Integer(static_cast<int64_t>(planned.target_tokens)));
  line.Set("step_ms", NumberOrNull(totals.step_ms));
  line.Set("compute_ms", NumberOrNull(totals.compute_ms));
  line.Set("tok_per_s", NumberOrNull(tok_s));
  line.Set("bytes_sent", Json::Integer(static_cast<int64_t>(totals.bytes_sent)));
  line.Set("micro_batches", Json::Integer(static_cast<int64_t>(totals.micro_batches)));
  line.Set("planner", Json::String(planned.plan.planner()));
  line.Set("estimated_step_ms", NumberOrNull(planned.plan.estimated_step_ms()));
  line.Set("predicted_step_ms", NumberOrNull(planned.predicted_ms));
  Json scales = Json::Object();
  for (const auto& [d, k] : refit_scale) scales.Set(std::to_string(d), NumberOrNull(k));
  line.Set("refit_scale", std::move(scales));
  if (first.has_val_loss()) line.Set("val_loss", NumberOrNull(first.val_loss()));
  line.Set("generation", Json::Integer(static_cast<int64_t>(generation)));
  line.Set("rank_loss", std::move(rank_loss));
  line.Set("rank_step_ms", std::move(rank_ms));
  line.Set("rank_bytes_sent", std::move(rank_bytes));
  line.Set("rank_micro_batches", std::move(rank_mb));
  line.Set("rank_mem_mib", std::move(rank_mem));
  line.Set("time", Json::String(UtcTimestamp()));
  return line;
}

std::string ConsoleStepLine(uint64_t steps_done, const StepTotals& totals,
                            const proto::MetricsReport& rank0, double tokens_per_s) {
  std::ostringstream os;
  os << "step: " << steps_done << "  loss: " << Fixed(totals.loss, 4)
     << "  grad_norm: " << Fixed(rank0.grad_norm(), 4) << "  lr: " << Sci(rank0.lr())
     << "  tok/s: " << Fixed(tokens_per_s, 0)
     << "  sent: " << Bytes(static_cast<double>(totals.bytes_sent))
     << "  micro-batches: " << totals.micro_batches;
  if (rank0.has_val_loss()) os << "  val_loss: " << Fixed(rank0.val_loss(), 4);
  return os.str();
}

}  // namespace seqmesh::launch
