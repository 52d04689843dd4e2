#include "scheduler/refit.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/check.h"
#include "runtime/stats.h"

namespace seqmesh::scheduler {

namespace {

void Push(std::deque<double>& q, double v, int window) {
  q.push_back(v);
  while (static_cast<int>(q.size()) > window) q.pop_front();
}

}  // namespace

Refit::Refit(int window, int min_samples) : window_(window), min_samples_(min_samples) {
  SM_CHECK(window >= 1 && min_samples >= 1 && min_samples <= window)
      << "Refit: window " << window << " and min_samples " << min_samples
      << " must satisfy 1 <= min_samples <= window";
}

void Refit::AddItem(int ring_size, double measured_ms, double estimated_ms) {
  if (ring_size < 1 || !std::isfinite(measured_ms) || !std::isfinite(estimated_ms) ||
      measured_ms <= 0 || estimated_ms <= 0)
    return;
  Push(log_ratio_[ring_size], std::log(measured_ms / estimated_ms), window_);
}

void Refit::AddFixed(double ms) {
  if (std::isfinite(ms) && ms >= 0) Push(fixed_, ms, window_);
}

void Refit::AddStep(const Plan& plan,
                    const std::vector<std::vector<std::optional<MicroBatchTime>>>& times) {
  const std::vector<std::vector<int>> items = MicroBatchItems(plan);
  std::vector<double> measured(plan.items.size(), std::numeric_limits<double>::infinity());
  std::vector<bool> missing(plan.items.size(), false);
  for (size_t r = 0; r < items.size(); ++r) {
    for (size_t m = 0; m < items[r].size(); ++m) {
      const int i = items[r][m];
      const bool have = r < times.size() && m < times[r].size() && times[r][m].has_value();
      if (!have) {
        missing[i] = true;
        continue;
      }
      measured[i] = std::min(measured[i], times[r][m]->end_ms - times[r][m]->start_ms);
    }
  }
  for (size_t i = 0; i < plan.items.size(); ++i)
    if (!missing[i])
      AddItem(static_cast<int>(plan.items[i].ring.size()), measured[i], plan.items[i].duration_ms);
}

double Refit::Scale(int ring_size) const {
  auto it = log_ratio_.find(ring_size);
  if (it == log_ratio_.end() || static_cast<int>(it->second.size()) < min_samples_) return 1.0;
  return std::exp(Median({it->second.begin(), it->second.end()}));
}

std::map<int, double> Refit::Scales() const {
  std::map<int, double> out;
  for (const auto& [d, q] : log_ratio_)
    if (static_cast<int>(q.size()) >= min_samples_) out[d] = Scale(d);
  return out;
}

std::optional<double> Refit::FixedMs() const {
  if (static_cast<int>(fixed_.size()) < min_samples_) return std::nullopt;
  return Median({fixed_.begin(), fixed_.end()});
}

CostModel Refit::Apply(const CostModel& base) const {
  CostModel out = base;
  // Measurements are against the base model, scale included: the factors multiply.
  for (const auto& [d, k] : Scales()) out.scale[d] = base.Scale(d) * k;
  if (std::optional<double> f = FixedMs()) out.step_fixed_ms = *f;
  return out;
}

std::vector<std::vector<int>> MicroBatchItems(const Plan& plan) {
  std::vector<std::vector<int>> out(plan.num_ranks);
  for (size_t i = 0; i < plan.items.size(); ++i)
    for (int32_t r : plan.items[i].ring) {
      SM_CHECK(r >= 0 && r < plan.num_ranks)
          << "plan item " << i << " names rank " << r << " of " << plan.num_ranks;
      out[r].push_back(static_cast<int>(i));
    }
  return out;
}

}  // namespace seqmesh::scheduler
