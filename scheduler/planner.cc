#include "scheduler/planner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <queue>

#include "runtime/check.h"

namespace seqmesh::scheduler {
namespace {

// `offload`: the planner gives rings Eq. 3's offload ratios (naive and balanced), so a sequence
// may need fewer ranks than its length over the capacity.
void CheckOptions(const CostModel& cost, const PlannerOptions& o,
                  const std::vector<int64_t>& lengths, bool offload) {
  SM_CHECK(o.num_ranks > 0) << "number of ranks must be > 0, got " << o.num_ranks;
  SM_CHECK(o.capacity > 0) << "capacity must be > 0, got " << o.capacity;
  for (size_t i = 0; i < lengths.size(); ++i) {
    SM_CHECK(lengths[i] > 0) << "sequence " << i << " has length " << lengths[i];
    const bool off = offload && o.offload;
    int64_t d = ShardSequence(cost, lengths[i], o.capacity, off, o.offload_gbps).ring_size;
    SM_CHECK(d <= o.num_ranks) << "sequence " << i << " of " << lengths[i] << " tokens needs " << d
                               << " ranks of capacity " << o.capacity
                               << (off ? " (with offload)" : "") << "; only " << o.num_ranks
                               << " ranks";
  }
}

int64_t MaxRankTokens(int64_t s, int d) {
  if (d == 1) return s;
  return 2 * ((s + 2 * d - 1) / (2 * d));
}

// Resident fraction of a rank's activations with offload ratio r (Eq. 3).
double Resident(const CostModel& cost, double r) {
  const double l = cost.layers_per_rank;
  return l <= 2 ? 1.0 : (2 + (1 - r) * (l - 2)) / l;
}

// Short sequences (<= C, one rank) and long ones (a ring each), as work items.
struct Split {
  std::vector<int32_t> shorts;
  std::vector<int32_t> longs;
};
Split SplitByCapacity(const std::vector<int64_t>& lengths, int64_t capacity) {
  Split out;
  for (int32_t i = 0; i < static_cast<int32_t>(lengths.size()); ++i)
    (lengths[i] <= capacity ? out.shorts : out.longs).push_back(i);
  return out;
}

// Gang placement on the least-loaded ranks, with backfilling: a ring starts when the last of
// its D ranks is free, which leaves the others idle in between; those gaps are kept and a later
// local item goes into the smallest gap that holds it (best fit) before it is given a rank's end.
// Items then carry start times that, sorted, give every rank a non-overlapping list; `ready`
// mirrors Simulate's replay.
class LeastLoaded {
 public:
  // `aligned`: rings of power-of-two size D take an aligned block [k D, (k+1) D) (the one free
  // first), which tiles the mesh the way pow2 communicators do.
  LeastLoaded(int n, bool aligned) : aligned_(aligned), ready_(n, 0.0) {
    for (int r = 0; r < n; ++r) heap_.push({0.0, r});
  }
  // Places `item` on the given ranks, from when the last of them is free.
  void PlaceOn(WorkItem& item, const std::vector<int32_t>& ranks, double ms) {
    item.ring = ranks;
    double start = 0;
    for (int32_t r : ranks) start = std::max(start, ready_[r]);
    Commit(item, start, ms);
  }
  // Places `item` (ring filled here) of per-member duration `ms` on `d` ranks.
  void Place(WorkItem& item, int d, double ms) {
    item.ring.clear();
    if (d == 1 && !gaps_.empty()) {
      auto it = gaps_.lower_bound(ms);
      if (it != gaps_.end()) {
        Gap g = it->second;
        gaps_.erase(it);
        item.ring.push_back(g.rank);
        item.start_ms = g.begin;
        if (g.end - g.begin - ms > kMinGapMs)
          gaps_.emplace(g.end - g.begin - ms, Gap{g.rank, g.begin + ms, g.end});
        return;
      }
    }
    double start = 0;
    const int n = static_cast<int>(ready_.size());
    if (aligned_ && d > 1 && (d & (d - 1)) == 0) {
      int best_block = 0;
      double best_start = INFINITY;
      for (int b = 0; b + d <= n; b += d) {
        double t = *std::max_element(ready_.begin() + b, ready_.begin() + b + d);
        if (t < best_start) {
          best_start = t;
          best_block = b;
        }
      }
      start = best_start;
      for (int k = 0; k < d; ++k) item.ring.push_back(best_block + k);
    } else {
      while (static_cast<int>(item.ring.size()) < d) {
        auto [t, r] = heap_.top();
        heap_.pop();
        if (t != ready_[r]) continue;  // stale: the rank moved on through an aligned block
        item.ring.push_back(r);
        start = std::max(start, t);
      }
    }
    Commit(item, start, ms);
  }

 private:
  void Commit(WorkItem& item, double start, double ms) {
    for (int32_t r : item.ring) {
      if (start - ready_[r] > kMinGapMs) gaps_.emplace(start - ready_[r], Gap{r, ready_[r], start});
      ready_[r] = start + ms;
      heap_.push({ready_[r], r});
    }
    item.start_ms = start;
  }

  static constexpr double kMinGapMs = 1e-6;
  struct Gap {
    int32_t rank;
    double begin, end;
  };
  using Entry = std::pair<double, int32_t>;
  bool aligned_;
  std::vector<double> ready_;
  // Holds (ready, rank); an entry whose time differs from ready_[rank] is stale and skipped.
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
  std::multimap<double, Gap> gaps_;  // length -> gap
};

struct Candidate {
  WorkItem item;
  double ms;  // per-member duration
};

double Duration(const CostModel& cost, const std::vector<int64_t>& lengths, const WorkItem& item) {
  std::vector<int64_t> l;
  for (int32_t s : item.sequences) l.push_back(lengths[s]);
  return RingCost(cost, l, static_cast<int>(item.ring.size()), 0, item.offload_ratio).total();
}

// The global order is the start order: it lists every rank's items in time order (they do not
// overlap), so rings sharing a rank are ordered the same way on all their members.
void OrderByStart(Plan& plan) {
  std::stable_sort(plan.items.begin(), plan.items.end(),
                   [](const WorkItem& a, const WorkItem& b) { return a.start_ms < b.start_ms; });
}

// The local packs after the rings (each on the rank free first, in the gaps the rings left),
// then the start order.
void PlacePacksAndOrder(const std::vector<Candidate>& packs, LeastLoaded& ranks, Plan& plan) {
  for (const Candidate& p : packs) {
    WorkItem item = p.item;
    ranks.Place(item, 1, p.ms);
    plan.items.push_back(std::move(item));
  }
  OrderByStart(plan);
}

// DP-Balance over fixed ring sizes: cost-descending, each item on its D least-loaded ranks.
Plan BalanceWithSizes(const CostModel& cost, const std::vector<int64_t>& lengths,
                      const PlannerOptions& o, const std::vector<std::vector<int32_t>>& packs,
                      const std::vector<int32_t>& longs, const std::vector<Shard>& shards,
                      bool aligned = false) {
  std::vector<Candidate> cands;
  cands.reserve(packs.size() + longs.size());
  for (const auto& p : packs) {
    Candidate c{{p, {0}, false, 0, 0}, 0};
    c.ms = Duration(cost, lengths, c.item);
    cands.push_back(std::move(c));
  }
  for (size_t i = 0; i < longs.size(); ++i) {
    Candidate c{{{longs[i]}, {}, false, shards[i].offload_ratio, 0}, 0};
    c.item.ring.assign(shards[i].ring_size, 0);
    c.ms = Duration(cost, lengths, c.item);
    cands.push_back(std::move(c));
  }
  std::stable_sort(cands.begin(), cands.end(),
                   [](const Candidate& a, const Candidate& b) { return a.ms > b.ms; });
  Plan plan{"balanced", o.capacity, o.num_ranks, lengths, {}, 0};
  plan.items.reserve(cands.size());
  LeastLoaded ranks(o.num_ranks, aligned);
  for (Candidate& c : cands) {
    ranks.Place(c.item, static_cast<int>(c.item.ring.size()), c.ms);
    plan.items.push_back(std::move(c.item));
  }
  OrderByStart(plan);
  return plan;
}

double StepOf(const CostModel& cost, Plan& plan) { return Simulate(cost, plan).step_ms; }

// The least d in [lo, hi] with ms(d) <= target, for ms non-increasing in d; -1 when ms(hi) is
// over the target.
template <typename Ms>
int LeastWidth(int lo, int hi, double target, Ms&& ms) {
  if (ms(hi) > target) return -1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (ms(mid) <= target)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// Ring shelves (beyond the paper): the long rings, largest area first, in shelves of at most
// `per_shelf` rings (or, `even`, as many in each shelf as that count of shelves allows) whose
// minimal sizes fit the mesh together; within a shelf every ring gets the
// least size that ends it by the shelf's height H, the least H whose sizes fit in N (sizes up to
// where chunks stop hiding their transfer). Shelves then go to the ranks free first in order, and
// the packs after them (filling the gaps). With rings of one size (atoms at the context length),
// a shelf of k rings is k rings of N/k ranks: the waves use the whole mesh whatever the count.
Plan BalanceInShelves(const CostModel& cost, const std::vector<int64_t>& lengths,
                      const PlannerOptions& o, const std::vector<Candidate>& packs,
                      const std::vector<int32_t>& longs, const std::vector<int>& d_plain,
                      int per_shelf, bool even) {
  const int n = o.num_ranks;
  const double hide_tokens = cost.a1 > 0 ? cost.KvTransferMs(1) / cost.a1 : 0;
  std::vector<int> order(longs.size());
  std::vector<double> area(longs.size());
  for (size_t i = 0; i < longs.size(); ++i) {
    order[i] = static_cast<int>(i);
    area[i] = d_plain[i] * SequenceRingCost(cost, lengths[longs[i]], d_plain[i]).total();
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return area[a] > area[b]; });
  auto d_max = [&](int i) {
    int hidden = hide_tokens > 0 ? static_cast<int>(lengths[longs[i]] / hide_tokens) : n;
    return std::clamp(hidden, d_plain[i], n);
  };
  auto ms = [&](int i, int d) { return SequenceRingCost(cost, lengths[longs[i]], d).total(); };
  auto width_for = [&](int i, double height) {  // least size ending ring i by `height`, or n + 1
    const int d = LeastWidth(d_plain[i], d_max(i), height, [&](int w) { return ms(i, w); });
    return d < 0 ? n + 1 : d;
  };
  Plan plan{"balanced", o.capacity, n, lengths, {}, 0};
  LeastLoaded ranks(n, false);
  for (size_t begin = 0; begin < order.size();) {
    // `even`: shelves as even as the count allows (k, k, k, r can leave the last one narrow).
    const size_t left = order.size() - begin;
    const size_t shelves = (left + per_shelf - 1) / per_shelf;
    const size_t take = even ? (left + shelves - 1) / shelves : per_shelf;
    size_t end = begin;
    int d_sum = 0;
    while (end < order.size() && end - begin < take && d_sum + d_plain[order[end]] <= n)
      d_sum += d_plain[order[end++]];
    double lo = 0, hi = 0;
    for (size_t k = begin; k < end; ++k) {
      lo = std::max(lo, ms(order[k], d_max(order[k])));
      hi = std::max(hi, ms(order[k], d_plain[order[k]]));
    }
    for (int it = 0; it < 30 && hi - lo > 1e-9 * hi; ++it) {
      const double mid = (lo + hi) / 2;
      int used = 0;
      for (size_t k = begin; k < end; ++k) used += width_for(order[k], mid);
      (used <= n ? hi : lo) = mid;
    }
    for (size_t k = begin; k < end; ++k) {
      const int i = order[k];
      const int d = std::min(width_for(i, hi), d_max(i));
      WorkItem item{{longs[i]}, {}, false, 0, 0};
      ranks.Place(item, d, ms(i, d));
      plan.items.push_back(std::move(item));
    }
    begin = end;
  }
  PlacePacksAndOrder(packs, ranks, plan);
  return plan;
}

// Ring columns (beyond the paper): the long rings split into `columns` groups by least-area
// first (LPT on their area at the minimal size); each group runs its rings one after the other
// on its own block of ranks, all at the group's width, the least that ends the group by a common
// target T; T is the least for which the blocks fit in the mesh and the rings' area plus the
// packs' fits in N T. Packs then go to the ranks free first (the ranks outside the blocks, then
// the blocks that end first). Where many long rings of about one size (atoms at the context
// length) would otherwise run in waves that do not divide the mesh, the blocks' widths absorb
// the remainder. Returns false when the blocks cannot fit.
bool BalanceInColumns(const CostModel& cost, const std::vector<int64_t>& lengths,
                      const PlannerOptions& o, const std::vector<Candidate>& packs,
                      const std::vector<int32_t>& longs, const std::vector<int>& d_plain,
                      int columns, Plan& plan) {
  const int n = o.num_ranks;
  std::vector<int> by_area(longs.size());
  std::vector<double> area(longs.size());
  for (size_t i = 0; i < longs.size(); ++i) {
    by_area[i] = static_cast<int>(i);
    area[i] = d_plain[i] * SequenceRingCost(cost, lengths[longs[i]], d_plain[i]).total();
  }
  std::stable_sort(by_area.begin(), by_area.end(), [&](int a, int b) { return area[a] > area[b]; });
  struct Column {
    std::vector<int> rings;  // indices into longs
    double area = 0;
    int d_min = 1, d_max = 1, width = 0;
  };
  std::vector<Column> cols(columns);
  for (int i : by_area) {
    Column& c = *std::min_element(cols.begin(), cols.end(),
                                  [](const Column& a, const Column& b) { return a.area < b.area; });
    c.rings.push_back(i);
    c.area += area[i];
  }
  // Past the size where chunks stop hiding their transfer a ring gains little: widths stay below.
  const double hide_tokens = cost.a1 > 0 ? cost.KvTransferMs(1) / cost.a1 : 0;
  int d_sum = 0;
  double pack_area = 0, ring_area = 0;
  for (const Candidate& p : packs) pack_area += p.ms;
  for (Column& c : cols) {
    if (c.rings.empty()) return false;
    int hidden = n;
    for (int i : c.rings) {
      c.d_min = std::max(c.d_min, d_plain[i]);
      if (hide_tokens > 0)
        hidden = std::min<int>(hidden, static_cast<int>(lengths[longs[i]] / hide_tokens));
    }
    c.d_max = std::clamp(hidden, c.d_min, n);
    d_sum += c.d_min;
    ring_area += c.area;
  }
  if (d_sum > n) return false;
  auto column_ms = [&](const Column& c, int d) {
    double t = 0;
    for (int i : c.rings) t += SequenceRingCost(cost, lengths[longs[i]], d).total();
    return t;
  };
  // The least width ending `c` by `target`, or 0.
  auto width_for = [&](const Column& c, double target) {
    const int d = LeastWidth(c.d_min, c.d_max, target, [&](int w) { return column_ms(c, w); });
    return d < 0 ? 0 : d;
  };
  auto fits = [&](double target) {
    int used = 0;
    double used_area = pack_area;
    for (Column& c : cols) {
      c.width = width_for(c, target);
      if (c.width == 0) return false;
      used += c.width;
      used_area += c.width * column_ms(c, c.width);
    }
    return used <= n && used_area <= n * target;
  };
  double lo = (ring_area + pack_area) / n, hi = lo;
  for (const Column& c : cols) hi = std::max(hi, column_ms(c, c.d_min));
  hi = std::max(hi, lo) * 2 + pack_area;
  if (!fits(hi)) return false;
  for (int it = 0; it < 30; ++it) {
    const double mid = (lo + hi) / 2;
    (fits(mid) ? hi : lo) = mid;
  }
  fits(hi);
  plan = Plan{"balanced", o.capacity, n, lengths, {}, 0};
  LeastLoaded ranks(n, false);
  int32_t offset = 0;
  std::vector<int32_t> block;
  for (Column& c : cols) {
    block.resize(c.width);
    std::iota(block.begin(), block.end(), offset);
    offset += c.width;
    std::vector<std::pair<double, int>> rings;
    for (int i : c.rings)
      rings.push_back({SequenceRingCost(cost, lengths[longs[i]], c.width).total(), i});
    std::stable_sort(rings.begin(), rings.end(),
                     [](auto& a, auto& b) { return a.first > b.first; });
    for (auto [ms, i] : rings) {
      WorkItem item{{longs[i]}, {}, false, 0, 0};
      ranks.PlaceOn(item, block, ms);
      plan.items.push_back(std::move(item));
    }
  }
  PlacePacksAndOrder(packs, ranks, plan);
  return true;
}

}  // namespace

Shard ShardSequence(const CostModel& cost, int64_t s, int64_t capacity, bool offload,
                    double offload_gbps) {
  Shard out;
  if (s <= capacity) return out;
  int d = static_cast<int>((s + capacity - 1) / capacity);
  while (MaxRankTokens(s, d) > capacity) ++d;
  out.ring_size = d;
  const double l = cost.layers_per_rank;
  if (!offload || cost.a2 <= 0 || l <= 2) return out;
  const double gbps = offload_gbps > 0 ? offload_gbps : std::min(cost.d2h_gbps, cost.h2d_gbps);
  // Ratios are multiples of 1 / (l - 2): the workers offload whole layers
  // (Model::OffloadedLayersFor), so the plan carries the ratio that runs.
  const double steps = l - 2;
  const double r_cap = std::min(1.0, cost.LayerMs(s) * gbps * 1e6 / cost.ActBytes(s));
  const double r_max = std::floor(r_cap * steps + 1e-9) / steps;
  if (r_max <= 0) return out;
  int best = d;
  while (best > 1 && MaxRankTokens(s, best - 1) * Resident(cost, r_max) <= capacity) --best;
  if (best == d) return out;
  // Least ratio that still fits on `best` ranks: resident(r) * tokens <= C.
  double need = static_cast<double>(capacity) / MaxRankTokens(s, best);  // resident fraction
  double r = std::clamp(1 - (need * l - 2) / steps, 0.0, r_max);
  r = std::min(r_max, std::ceil(r * steps - 1e-9) / steps);
  out.ring_size = best;
  out.offload_ratio = r;
  return out;
}

std::vector<std::vector<int32_t>> BestFitPack(const std::vector<int32_t>& ids,
                                              const std::vector<int64_t>& sizes, int64_t capacity,
                                              bool decreasing) {
  std::vector<int32_t> order = ids;
  if (decreasing)
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return sizes[a] > sizes[b]; });
  std::vector<std::vector<int32_t>> bins;
  std::multimap<int64_t, int32_t> space;  // remaining space -> bin
  for (int32_t id : order) {
    int64_t s = sizes[id];
    SM_CHECK(s <= capacity) << "sequence " << id << " of " << s << " tokens exceeds bin capacity "
                            << capacity;
    auto it = space.lower_bound(s);
    int32_t bin;
    int64_t left;
    if (it == space.end()) {
      bin = static_cast<int32_t>(bins.size());
      bins.emplace_back();
      left = capacity;
    } else {
      bin = it->second;
      left = it->first;
      space.erase(it);
    }
    bins[bin].push_back(id);
    if (left - s > 0) space.emplace(left - s, bin);
  }
  return bins;
}

double LowerBoundMs(const CostModel& cost, const std::vector<int64_t>& lengths, int n) {
  if (lengths.empty()) return 0;
  const double l = cost.layers_per_rank;
  double work = 0;
  int64_t longest = 0;
  for (int64_t s : lengths) {
    work += cost.LayerMs(static_cast<double>(s)) * l;
    longest = std::max(longest, s);
  }
  const double others = work - cost.LayerMs(static_cast<double>(longest)) * l;
  double best = INFINITY;
  for (int d = 1; d <= n; ++d) {
    double t = SequenceRingCost(cost, longest, d).total();
    best = std::min(best, std::max(t, (others + d * t) / n));
  }
  return best;
}

Plan PlanStatic(const CostModel& cost, const std::vector<int64_t>& lengths,
                const PlannerOptions& o) {
  CheckOptions(cost, o, lengths, false);
  SM_CHECK(o.context >= o.capacity)
      << "context " << o.context << " must be >= capacity " << o.capacity;
  const int d_cp = static_cast<int>((o.context + o.capacity - 1) / o.capacity);
  SM_CHECK(d_cp <= o.num_ranks) << "context " << o.context << " needs d_cp = " << d_cp
                                << " ranks; only " << o.num_ranks;
  const int d_dp = o.num_ranks / d_cp;
  // Each sequence padded to a multiple of 2 d_cp; packs hold at most d_cp * C padded tokens.
  std::vector<int64_t> padded(lengths.size());
  std::vector<int32_t> ids(lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) {
    padded[i] = (lengths[i] + 2 * d_cp - 1) / (2 * d_cp) * (2 * d_cp);
    ids[i] = static_cast<int32_t>(i);
  }
  const int64_t pack_capacity = d_cp * o.capacity;
  for (size_t i = 0; i < lengths.size(); ++i) {
    SM_CHECK(lengths[i] <= pack_capacity)
        << "sequence " << i << " (" << lengths[i] << " tokens) is longer than the context";
    // With an even capacity the padded length of a sequence <= L also fits in L.
    padded[i] = std::min(padded[i], pack_capacity);
  }
  auto packs = BestFitPack(ids, padded, pack_capacity, /*decreasing=*/false);
  Plan plan{"static", o.capacity, o.num_ranks, lengths, {}, 0};
  for (size_t k = 0; k < packs.size(); ++k) {
    WorkItem item{packs[k], {}, true, 0, 0};
    const int group = static_cast<int>(k % d_dp);
    for (int p = 0; p < d_cp; ++p) item.ring.push_back(group * d_cp + p);
    plan.items.push_back(std::move(item));
  }
  plan.lower_bound_ms = LowerBoundMs(cost, lengths, o.num_ranks);
  Simulate(cost, plan);
  return plan;
}

Plan PlanNaive(const CostModel& cost, const std::vector<int64_t>& lengths,
               const PlannerOptions& o) {
  CheckOptions(cost, o, lengths, true);
  Split split = SplitByCapacity(lengths, o.capacity);
  auto packs = BestFitPack(split.shorts, lengths, o.capacity, /*decreasing=*/false);
  // Arrival order: packs by their first sequence, rings by their sequence.
  std::vector<WorkItem> items;
  for (auto& p : packs) items.push_back({p, {0}, false, 0, 0});
  for (int32_t s : split.longs) {
    Shard sh = ShardSequence(cost, lengths[s], o.capacity, o.offload, o.offload_gbps);
    items.push_back({{s}, std::vector<int32_t>(sh.ring_size), false, sh.offload_ratio, 0});
  }
  std::sort(items.begin(), items.end(),
            [](const WorkItem& a, const WorkItem& b) { return a.sequences[0] < b.sequences[0]; });
  Plan plan{"naive", o.capacity, o.num_ranks, lengths, {}, 0};
  int cursor = 0;  // ranks are filled by id, wave by wave
  for (WorkItem& item : items) {
    const int d = static_cast<int>(item.ring.size());
    if (cursor + d > o.num_ranks) cursor = 0;
    for (int p = 0; p < d; ++p) item.ring[p] = cursor + p;
    cursor = (cursor + d) % o.num_ranks;
    plan.items.push_back(std::move(item));
  }
  plan.lower_bound_ms = LowerBoundMs(cost, lengths, o.num_ranks);
  Simulate(cost, plan);
  return plan;
}

Plan PlanPow2(const CostModel& cost, const std::vector<int64_t>& lengths, const PlannerOptions& o) {
  CheckOptions(cost, o, lengths, false);
  Split split = SplitByCapacity(lengths, o.capacity);
  auto packs = BestFitPack(split.shorts, lengths, o.capacity, /*decreasing=*/true);
  std::vector<Candidate> cands;
  for (auto& p : packs) cands.push_back({{p, {0}, false, 0, 0}, 0});
  for (int32_t s : split.longs) {
    int d = 1;
    while (d < ShardSequence(cost, lengths[s], o.capacity, false).ring_size) d *= 2;
    SM_CHECK(d <= o.num_ranks) << "sequence " << s << " needs a power-of-two ring of " << d
                               << " ranks; only " << o.num_ranks;
    cands.push_back({{{s}, std::vector<int32_t>(d), false, 0, 0}, 0});
  }
  for (Candidate& c : cands) c.ms = Duration(cost, lengths, c.item);
  std::stable_sort(cands.begin(), cands.end(),
                   [](const Candidate& a, const Candidate& b) { return a.ms > b.ms; });
  Plan plan{"pow2", o.capacity, o.num_ranks, lengths, {}, 0};
  std::vector<double> ready(o.num_ranks, 0.0);
  for (Candidate& c : cands) {
    const int d = static_cast<int>(c.item.ring.size());
    // Aligned blocks [k d, (k+1) d), as pre-built power-of-two communicators require.
    int best_block = 0;
    double best_start = INFINITY;
    for (int b = 0; b + d <= o.num_ranks; b += d) {
      double start = *std::max_element(ready.begin() + b, ready.begin() + b + d);
      if (start < best_start) {
        best_start = start;
        best_block = b;
      }
    }
    for (int p = 0; p < d; ++p) {
      c.item.ring[p] = best_block + p;
      ready[best_block + p] = best_start + c.ms;
    }
    plan.items.push_back(std::move(c.item));
  }
  plan.lower_bound_ms = LowerBoundMs(cost, lengths, o.num_ranks);
  Simulate(cost, plan);
  return plan;
}

namespace {

// A long sequence of `s` tokens on `d` ranks: without offload from its no-offload minimum
// `d_plain` up; below it (d >= its Eq. 3 shard's size) at the least whole-layer ratio that fits.
Shard ShardAt(const CostModel& cost, int64_t s, int64_t capacity, int d, int d_plain,
              const Shard& shard) {
  if (d >= d_plain) return {d, 0.0};
  SM_CHECK(d >= shard.ring_size) << "internal error: a ring of " << d << " for a sequence of " << s
                                 << " tokens whose offloaded minimum is " << shard.ring_size;
  const double l = cost.layers_per_rank, steps = l - 2;
  const double need = static_cast<double>(capacity) / MaxRankTokens(s, d);
  double r = std::clamp(1 - (need * l - 2) / steps, 0.0, 1.0);
  r = std::min(shard.offload_ratio, std::ceil(r * steps - 1e-9) / steps);
  return {d, r};
}

// For a target step time: every ring of `longs` slower than `target` gets the smallest size
// that brings it to the target (or its fastest size up to num_ranks); a widened ring runs
// without offload, so it starts at its no-offload minimum `d_plain`. True when any changed.
bool WidenCriticalRings(const CostModel& cost, const std::vector<int64_t>& lengths,
                        const std::vector<int32_t>& longs, const std::vector<int>& d_plain,
                        int num_ranks, double target, std::vector<Shard>& wide) {
  bool changed = false;
  for (size_t i = 0; i < longs.size(); ++i) {
    const int64_t s = lengths[longs[i]];
    double t = SequenceRingCost(cost, s, wide[i].ring_size, wide[i].offload_ratio).total();
    if (t <= target) continue;
    int best_d = wide[i].ring_size;
    double best_t = t;
    for (int d = std::max(wide[i].ring_size + 1, d_plain[i]); d <= num_ranks; ++d) {
      double td = SequenceRingCost(cost, s, d).total();
      if (td < best_t) {
        best_t = td;
        best_d = d;
      }
      if (td <= target || td > best_t * 1.05) break;
    }
    if (best_d != wide[i].ring_size) {
      wide[i] = {best_d, 0.0};
      changed = true;
    }
  }
  return changed;
}

}  // namespace

Plan PlanBalanced(const CostModel& cost, const std::vector<int64_t>& lengths,
                  const PlannerOptions& o) {
  CheckOptions(cost, o, lengths, true);
  Split split = SplitByCapacity(lengths, o.capacity);
  auto packs = BestFitPack(split.shorts, lengths, o.capacity, /*decreasing=*/true);
  std::vector<Shard> shards;
  for (int32_t s : split.longs)
    shards.push_back(ShardSequence(cost, lengths[s], o.capacity, o.offload, o.offload_gbps));
  const double bound = LowerBoundMs(cost, lengths, o.num_ranks);
  Plan best = BalanceWithSizes(cost, lengths, o, packs, split.longs, shards);
  double best_step = StepOf(cost, best);
  std::vector<Shard> best_sizes = shards;
  bool best_aligned = false;
  auto consider = [&](const std::vector<Shard>& sizes, bool aligned = false) {
    Plan p = BalanceWithSizes(cost, lengths, o, packs, split.longs, sizes, aligned);
    double step = StepOf(cost, p);
    if (step < best_step) {
      best_step = step;
      best = std::move(p);
      best_sizes = sizes;
      best_aligned = aligned;
    }
  };
  if (o.widen && !split.longs.empty()) {
    std::vector<int> d_plain(split.longs.size());
    for (size_t i = 0; i < split.longs.size(); ++i)
      d_plain[i] = ShardSequence(cost, lengths[split.longs[i]], o.capacity, false).ring_size;
    // (a) Uniform widening by a factor k: long rings are moldable jobs; wider rings pack the
    // mesh with less idle time while chunks stay long enough to hide the KV transfer.
    for (double k : {1.125, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0}) {
      std::vector<Shard> wide = shards;
      for (size_t i = 0; i < wide.size(); ++i) {
        int d = std::min(o.num_ranks, static_cast<int>(std::ceil(k * wide[i].ring_size)));
        wide[i] = ShardAt(cost, lengths[split.longs[i]], o.capacity, d, d_plain[i], shards[i]);
      }
      consider(wide);
    }
    // (b) Power-of-two sizes: they tile the mesh; taking them as a candidate means balanced is
    // never worse than the pow2 baseline's ring sizes.
    {
      std::vector<Shard> wide = shards;
      for (size_t i = 0; i < wide.size(); ++i) {
        int d = 1;
        while (d < d_plain[i]) d *= 2;
        wide[i] = ShardAt(cost, lengths[split.longs[i]], o.capacity, std::min(d, o.num_ranks),
                          d_plain[i], shards[i]);
      }
      consider(wide);
      consider(wide, /*aligned=*/true);
    }
    // (c) Critical rings, on top of the best sizes so far: for a target step T, every ring slower
    // than T gets the smallest D that brings it to T (or its fastest D).
    const std::vector<Shard> base = best_sizes;
    const bool base_aligned = best_aligned;
    for (double f : {0.9, 0.95, 1.0, 1.01, 1.02, 1.03, 1.05, 1.08, 1.12, 1.2, 1.35, 1.6, 2.0}) {
      const double target = bound * f;
      if (target >= best_step) break;
      std::vector<Shard> wide = base;
      if (WidenCriticalRings(cost, lengths, split.longs, d_plain, o.num_ranks, target, wide))
        consider(wide, base_aligned);
    }
  }
  // (d) Ring columns, when the plan so far is more than 1% above the bound.
  if (o.widen && !split.longs.empty() && best_step > bound * 1.01) {
    std::vector<int> d_plain(split.longs.size());
    int d_widest = 1;
    for (size_t i = 0; i < split.longs.size(); ++i) {
      d_plain[i] = ShardSequence(cost, lengths[split.longs[i]], o.capacity, false).ring_size;
      d_widest = std::max(d_widest, d_plain[i]);
    }
    std::vector<Candidate> pack_items;
    for (const auto& p : packs) {
      Candidate c{{p, {0}, false, 0, 0}, 0};
      c.ms = Duration(cost, lengths, c.item);
      pack_items.push_back(std::move(c));
    }
    std::stable_sort(pack_items.begin(), pack_items.end(),
                     [](const Candidate& a, const Candidate& b) { return a.ms > b.ms; });
    const int most = std::min<int>(split.longs.size(), o.num_ranks / d_widest);
    std::vector<int> counts;
    constexpr int kTries = 24;
    for (int j = 0; j < kTries; ++j) {
      int g = most <= kTries ? j + 1
                             : static_cast<int>(std::lround(std::pow(most, j / (kTries - 1.0))));
      if (g <= most && (counts.empty() || g != counts.back())) counts.push_back(g);
    }
    for (int k : counts) {  // shelves of at most k rings
      for (bool even : {false, true}) {
        Plan p = BalanceInShelves(cost, lengths, o, pack_items, split.longs, d_plain, k, even);
        double step = StepOf(cost, p);
        if (step < best_step) {
          best_step = step;
          best = std::move(p);
        }
      }
    }
    for (int g : counts) {
      Plan p;
      if (!BalanceInColumns(cost, lengths, o, pack_items, split.longs, d_plain, g, p)) continue;
      double step = StepOf(cost, p);
      if (step < best_step) {
        best_step = step;
        best = std::move(p);
      }
    }
  }
  best.lower_bound_ms = bound;
  Simulate(cost, best);
  return best;
}

Plan PlanWith(PlannerKind planner, const CostModel& cost, const std::vector<int64_t>& lengths,
              const PlannerOptions& options) {
  switch (planner) {
    case PlannerKind::kStatic:
      return PlanStatic(cost, lengths, options);
    case PlannerKind::kNaive:
      return PlanNaive(cost, lengths, options);
    case PlannerKind::kPow2:
      return PlanPow2(cost, lengths, options);
    case PlannerKind::kBalanced:
      return PlanBalanced(cost, lengths, options);
  }
  SM_CHECK(false) << "unknown planner " << static_cast<int>(planner);
  return {};
}

Plan PlanByName(const std::string& planner, const CostModel& cost,
                const std::vector<int64_t>& lengths, const PlannerOptions& options) {
  return PlanWith(PlannerNamed(planner), cost, lengths, options);
}

}  // namespace seqmesh::scheduler
