#include "scheduler/exact_plan.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include "runtime/check.h"
#include "scheduler/planner.h"

namespace seqmesh::scheduler {
namespace {

struct Width {
  int ranks;
  double ms;  // per member, t(s, D)
};

// All sequences of one length: interchangeable, so the search branches on the type, not the id.
struct ItemType {
  int64_t length = 0;
  std::vector<int32_t> ids;
  std::vector<Width> widths;  // each strictly faster than every narrower one
  double least_area = 0;      // min over widths of D t(s, D)
  double fastest_ms = 0;
};

class Search {
 public:
  Search(std::vector<ItemType> types, int n, double incumbent, int64_t max_nodes)
      : types_(std::move(types)), n_(n), best_(incumbent), max_nodes_(max_nodes) {
    count_.resize(types_.size());
    for (size_t k = 0; k < types_.size(); ++k) {
      count_[k] = static_cast<int>(types_[k].ids.size());
      area_ += count_[k] * types_[k].least_area;
    }
  }

  // Runs the search; the best sequence of (type, width index) choices is in best_choices().
  void Run() {
    std::vector<double> ready(n_, 0.0);
    Visit(ready, 0.0);
  }
  double best() const { return best_; }
  bool finished() const { return nodes_ <= max_nodes_; }
  int64_t nodes() const { return nodes_; }
  const std::vector<std::pair<int, int>>& best_choices() const { return best_choices_; }

 private:
  // `ready`: each rank's free time, sorted, none below `now` (the last start).
  void Visit(const std::vector<double>& ready, double now) {
    if (++nodes_ > max_nodes_) return;
    if (choices_.size() == total_items()) {
      if (ready.back() < best_ - Tolerance()) {
        best_ = ready.back();
        best_choices_ = choices_;
      }
      return;
    }
    if (Bound(ready, now) >= best_ - Tolerance()) return;
    if (SeenEarlier(ready, now)) return;
    std::vector<double> next(n_);
    // Two items that start at the same time commute (each takes ranks free at that time): after
    // an item of (type, width) started at `now`, another starting at `now` comes no earlier in
    // (type, width) order.
    const std::pair<int, int> last =
        choices_.empty() ? std::pair<int, int>{-1, -1} : choices_.back();
    for (size_t k = 0; k < types_.size(); ++k) {
      if (count_[k] == 0) continue;
      const ItemType& type = types_[k];
      for (size_t w = 0; w < type.widths.size(); ++w) {
        const int d = type.widths[w].ranks;
        const double start = std::max(now, ready[d - 1]);
        if (start == now && !choices_.empty() &&
            std::pair<int, int>(static_cast<int>(k), static_cast<int>(w)) < last)
          continue;
        const double end = start + type.widths[w].ms;
        if (end >= best_ - Tolerance()) continue;
        // The d ranks free first run the item; the others keep their times, raised to `start`.
        for (int r = 0; r < n_; ++r) next[r] = r < d ? end : std::max(ready[r], start);
        std::inplace_merge(next.begin(), next.begin() + d, next.end());  // both parts sorted
        --count_[k];
        area_ -= type.least_area;
        choices_.push_back({static_cast<int>(k), static_cast<int>(w)});
        Visit(next, start);
        choices_.pop_back();
        area_ += type.least_area;
        ++count_[k];
        if (nodes_ > max_nodes_) return;
      }
    }
  }

  // No plan through this node ends before: its last end, now plus the slowest remaining item at
  // its fastest, or the ranks' time from now (or their end) plus the least area still to place,
  // spread over all ranks.
  double Bound(const std::vector<double>& ready, double now) const {
    double busy = 0, slowest = 0;
    for (double r : ready) busy += r;
    for (size_t k = 0; k < types_.size(); ++k)
      if (count_[k] > 0) slowest = std::max(slowest, types_[k].fastest_ms);
    return std::max({ready.back(), now + slowest, (busy + area_) / n_});
  }

  // The same items left, the same last choice and the same ready times relative to now, reached
  // at an earlier or equal `now`: this node cannot do better (the earlier node can run any of its
  // continuations, each item as much earlier). Times are compared to the nanosecond.
  bool SeenEarlier(const std::vector<double>& ready, double now) {
    if (seen_.size() >= kMaxSeen) return false;
    // The last choice is part of the state: it decides which items may start at `now` next.
    std::string key(reinterpret_cast<const char*>(count_.data()), count_.size() * sizeof(int));
    if (!choices_.empty())
      key.append(reinterpret_cast<const char*>(&choices_.back()), sizeof(choices_.back()));
    for (double r : ready) {
      const int64_t q = std::llround((r - now) * 1e6);
      key.append(reinterpret_cast<const char*>(&q), sizeof(q));
    }
    auto [it, inserted] = seen_.emplace(std::move(key), now);
    if (inserted) return false;
    if (it->second <= now + 1e-6) return true;
    it->second = now;
    return false;
  }

  size_t total_items() const {
    size_t n = 0;
    for (const ItemType& t : types_) n += t.ids.size();
    return n;
  }
  double Tolerance() const { return 1e-9 * std::max(1.0, best_); }

  static constexpr size_t kMaxSeen = 4'000'000;
  std::vector<ItemType> types_;
  int n_;
  double best_;
  int64_t max_nodes_;
  int64_t nodes_ = 0;
  std::vector<int> count_;
  double area_ = 0;
  std::vector<std::pair<int, int>> choices_, best_choices_;
  std::unordered_map<std::string, double> seen_;
};

// The plan of a choice sequence: each item on the d ranks free first (lowest id on ties), in
// choice order, which is the start order.
Plan PlanOfChoices(const std::vector<ItemType>& types,
                   const std::vector<std::pair<int, int>>& choices, const ExactOptions& o,
                   const std::vector<int64_t>& lengths) {
  Plan plan{"exact", o.capacity, o.num_ranks, lengths, {}, 0};
  std::vector<double> ready(o.num_ranks, 0.0);
  std::vector<size_t> used(types.size(), 0);
  std::vector<int32_t> order(o.num_ranks);
  double now = 0;
  for (auto [k, w] : choices) {
    const Width& width = types[k].widths[w];
    for (int r = 0; r < o.num_ranks; ++r) order[r] = r;
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return ready[a] < ready[b]; });
    WorkItem item{{types[k].ids[used[k]++]}, {}, false, 0, 0};
    item.ring.assign(order.begin(), order.begin() + width.ranks);
    double start = now;
    for (int32_t r : item.ring) start = std::max(start, ready[r]);
    for (int32_t r : item.ring) ready[r] = start + width.ms;
    item.start_ms = now = start;
    plan.items.push_back(std::move(item));
  }
  return plan;
}

}  // namespace

ExactResult PlanExact(const CostModel& cost, const std::vector<int64_t>& lengths,
                      const ExactOptions& o) {
  SM_CHECK(o.num_ranks > 0 && o.num_ranks <= 64)
      << "exact plan: number of ranks must be in [1, 64], got " << o.num_ranks;
  SM_CHECK(cost.contended_pass.empty())
      << "exact plan: the cost file has contended pass calibrations; the exact model has none";
  SM_CHECK(cost.Pass(1).ms == 0) << "exact plan: the cost file's local pass has a per-pass ms ("
                                 << cost.Pass(1).ms << "), so packing short sequences matters";
  // The balanced plan is the first incumbent (it validates the options as well).
  PlannerOptions po{o.num_ranks, o.capacity, o.capacity * o.num_ranks, false, true};
  Plan balanced = PlanBalanced(cost, lengths, po);
  const double balanced_step = Simulate(cost, balanced).step_ms;

  std::map<int64_t, ItemType> by_length;
  for (size_t i = 0; i < lengths.size(); ++i) {
    ItemType& t = by_length[lengths[i]];
    t.length = lengths[i];
    t.ids.push_back(static_cast<int32_t>(i));
  }
  std::vector<ItemType> types;
  for (auto& [s, t] : by_length) {
    const int d_min = ShardSequence(cost, s, o.capacity, false).ring_size;
    t.least_area = t.fastest_ms = INFINITY;
    for (int d = d_min; d <= o.num_ranks; ++d) {
      const double ms = SequenceRingCost(cost, s, d).total();
      if (!t.widths.empty() && ms >= t.widths.back().ms) continue;  // slower and wider
      t.widths.push_back({d, ms});
      t.least_area = std::min(t.least_area, d * ms);
      t.fastest_ms = std::min(t.fastest_ms, ms);
    }
    types.push_back(std::move(t));
  }
  std::stable_sort(types.begin(), types.end(), [](const ItemType& a, const ItemType& b) {
    return a.fastest_ms > b.fastest_ms;
  });

  Search search(types, o.num_ranks, balanced_step - cost.step_fixed_ms, o.max_nodes);
  search.Run();
  ExactResult out;
  out.optimal = search.finished();
  out.nodes = search.nodes();
  if (search.best_choices().empty()) {
    out.plan = std::move(balanced);  // nothing faster: the balanced plan is optimal (or the best)
    out.plan.planner = "exact";
  } else {
    out.plan = PlanOfChoices(types, search.best_choices(), o, lengths);
  }
  out.plan.lower_bound_ms = LowerBoundMs(cost, lengths, o.num_ranks);
  out.step_ms = Simulate(cost, out.plan).step_ms;
  return out;
}

}  // namespace seqmesh::scheduler
