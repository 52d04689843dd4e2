#include "launch/step_metrics.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "launch/format.h"
#include "launch/metrics_file.h"

namespace seqmesh::launch {
namespace {

constexpr double kGiB = double(1 << 30);

// JSON cannot hold NaN or infinity (a diverged loss): those are written as null.
Json NumberOrNull(double v) { return std::isfinite(v) ? Json::Number(v) : Json(); }

}  // namespace

std::string Bytes(double b) {
  if (b < 1024) return Fixed(b, 0) + "B";
  if (b < 1024.0 * 1024) return Fixed(b / 1024, 1) + "KiB";
  if (b < 1024.0 * 1024 * 1024) return Fixed(b / (1024.0 * 1024), 1) + "MiB";
  return Fixed(b / (1024.0 * 1024 * 1024), 2) + "GiB";
}

double CausalPairs(const proto::StepPlan& plan) {
  double pairs = 0;
  for (const proto::RankPlan& r : plan.ranks())
    for (const proto::MicroBatch& mb : r.micro_batches())
      for (const proto::Segment& seg : mb.segments())
        for (const proto::TokenRange& t : seg.ranges()) {
          const double len = static_cast<double>(t.end() - t.begin());
          pairs += 0.5 * len * (len + 1);
        }
  return pairs;
}

int64_t LoraParams(const ModelConfig& m, const LoraConfig& lora) {
  if (lora.rank <= 0) return 0;
  const int64_t q = m.heads * m.head_dim(), kv = m.kv_heads * m.head_dim();
  int64_t per_layer = 0;  // r (in + out) per adapted projection
  for (const std::string& t : lora.targets) {
    if (t == "q_proj") per_layer += m.hidden + q;
    if (t == "k_proj" || t == "v_proj") per_layer += m.hidden + kv;
    if (t == "o_proj") per_layer += q + m.hidden;
    if (t == "gate_proj" || t == "up_proj" || t == "down_proj") per_layer += m.hidden + m.ffn;
  }
  return m.layers * lora.rank * per_layer;
}

double StepModelFlops(const ModelConfig& m, const proto::StepPlan& plan, int64_t tokens,
                      const LoraConfig& lora) {
  const double attention = 12.0 * m.layers * m.heads * m.head_dim() * CausalPairs(plan);
  if (lora.rank <= 0) return 6.0 * m.NumMatmulParams() * tokens + attention;
  return (4.0 * m.NumMatmulParams() + 6.0 * LoraParams(m, lora)) * tokens + attention;
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

namespace {

// The plan's sequences longer than its capacity: how many, the ranks each runs on (its ring, or
// one), and how many run with an offload ratio (distributed.offload).
struct LongSequences {
  int64_t count = 0, ranks = 0, offloaded = 0;
};
LongSequences LongSequencesOf(const proto::StepPlan& plan) {
  LongSequences out;
  std::set<uint64_t> seen;
  for (const proto::RankPlan& rp : plan.ranks()) {
    for (const proto::MicroBatch& mb : rp.micro_batches()) {
      for (const proto::Segment& seg : mb.segments()) {
        const uint64_t id = seg.sequence_id();
        if (id >= static_cast<uint64_t>(plan.sequences_size()) ||
            plan.sequences(static_cast<int>(id)).length() <= plan.capacity() ||
            !seen.insert(id).second)
          continue;
        ++out.count;
        out.ranks += std::max(1, mb.ring_size());
        out.offloaded += mb.offload_ratio() > 0;
      }
    }
  }
  return out;
}

}  // namespace

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
  const LongSequences longs = LongSequencesOf(planned.plan);
  line.Set("long_sequences", Json::Integer(longs.count));
  line.Set("ranks_per_long_sequence",
           longs.count > 0 ? NumberOrNull(static_cast<double>(longs.ranks) / longs.count) : Json());
  line.Set("offloaded_sequences", Json::Integer(longs.offloaded));
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
  AddOffloadFields(reports, line);
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
  if (rank0.has_offload()) os << OffloadConsoleText(rank0.offload());
  return os.str();
}

void AddOffloadFields(const proto::OffloadReport& f, Json& record) {
  // The optimizer's figures where it is offloaded (an update always takes time), not for a run
  // that offloads only activations.
  if (f.update_ms() > 0 || f.read_bytes() + f.written_bytes() > 0) {
    record.Set("offload_read_bytes", Json::Integer(static_cast<int64_t>(f.read_bytes())));
    record.Set("offload_written_bytes", Json::Integer(static_cast<int64_t>(f.written_bytes())));
    const double moved = static_cast<double>(f.read_bytes() + f.written_bytes());
    record.Set("offload_gib_per_s", Json::Number(f.io_s() > 0 ? moved / kGiB / f.io_s() : 0.0));
    record.Set("offload_overlap", Json::Number(f.overlap()));
    record.Set("offload_ms", Json::Number(f.update_ms()));
  }
  record.Set("vm_hwm_mib", Json::Number(f.vm_hwm_mib()));
  record.Set("vm_lck_mib", Json::Number(f.vm_lck_mib()));
  if (f.activation_out_bytes() + f.activation_in_bytes() > 0) {
    record.Set("activation_out_bytes",
               Json::Integer(static_cast<int64_t>(f.activation_out_bytes())));
    record.Set("activation_in_bytes", Json::Integer(static_cast<int64_t>(f.activation_in_bytes())));
    record.Set("activation_wait_ms", Json::Number(f.activation_wait_ms()));
  }
  if (f.parameter_read_bytes() + f.parameter_written_bytes() > 0) {
    record.Set("parameter_read_bytes",
               Json::Integer(static_cast<int64_t>(f.parameter_read_bytes())));
    record.Set("parameter_written_bytes",
               Json::Integer(static_cast<int64_t>(f.parameter_written_bytes())));
    record.Set("parameter_wait_ms", Json::Number(f.parameter_wait_ms()));
  }
}

void AddOffloadFields(const std::vector<std::optional<proto::MetricsReport>>& reports,
                      Json& record) {
  proto::OffloadReport total;
  total.set_overlap(1.0);
  Json rank_hwm = Json::Array();
  bool any = false;
  for (const auto& r : reports) {
    if (!r || !r->has_offload()) {
      rank_hwm.Push(Json());
      continue;
    }
    const proto::OffloadReport& f = r->offload();
    any = true;
    total.set_read_bytes(total.read_bytes() + f.read_bytes());
    total.set_written_bytes(total.written_bytes() + f.written_bytes());
    total.set_io_s(std::max(total.io_s(), f.io_s()));
    total.set_overlap(std::min(total.overlap(), f.overlap()));
    total.set_update_ms(std::max(total.update_ms(), f.update_ms()));
    total.set_vm_hwm_mib(std::max(total.vm_hwm_mib(), f.vm_hwm_mib()));
    total.set_vm_lck_mib(std::max(total.vm_lck_mib(), f.vm_lck_mib()));
    total.set_activation_out_bytes(total.activation_out_bytes() + f.activation_out_bytes());
    total.set_activation_in_bytes(total.activation_in_bytes() + f.activation_in_bytes());
    total.set_activation_wait_ms(std::max(total.activation_wait_ms(), f.activation_wait_ms()));
    total.set_parameter_read_bytes(total.parameter_read_bytes() + f.parameter_read_bytes());
    total.set_parameter_written_bytes(total.parameter_written_bytes() +
                                      f.parameter_written_bytes());
    total.set_parameter_wait_ms(std::max(total.parameter_wait_ms(), f.parameter_wait_ms()));
    rank_hwm.Push(Json::Number(f.vm_hwm_mib()));
  }
  if (!any) return;
  AddOffloadFields(total, record);
  record.Set("rank_vm_hwm_mib", std::move(rank_hwm));
}

std::string OffloadConsoleText(const proto::OffloadReport& f) {
  std::ostringstream out;
  if (f.read_bytes() + f.written_bytes() > 0) {
    const double moved = static_cast<double>(f.read_bytes() + f.written_bytes());
    out << "  ssd: " << Bytes(static_cast<double>(f.read_bytes())) << " in "
        << Bytes(static_cast<double>(f.written_bytes())) << " out "
        << Fixed(f.io_s() > 0 ? moved / kGiB / f.io_s() : 0.0, 2) << "GiB/s overlap "
        << Fixed(f.overlap(), 2);
  }
  if (f.activation_out_bytes() + f.activation_in_bytes() > 0) {
    out << "  act: " << Bytes(static_cast<double>(f.activation_out_bytes())) << " out "
        << Bytes(static_cast<double>(f.activation_in_bytes())) << " in, waited "
        << Fixed(f.activation_wait_ms(), 1) << "ms";
  }
  if (f.parameter_read_bytes() + f.parameter_written_bytes() > 0) {
    out << "  params: " << Bytes(static_cast<double>(f.parameter_read_bytes())) << " in "
        << Bytes(static_cast<double>(f.parameter_written_bytes())) << " out, waited "
        << Fixed(f.parameter_wait_ms(), 1) << "ms";
  }
  out << "  hwm: " << Fixed(f.vm_hwm_mib(), 0) << "MiB  locked: " << Fixed(f.vm_lck_mib(), 0)
      << "MiB";
  return out.str();
}

}  // namespace seqmesh::launch
