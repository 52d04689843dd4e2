#include "scheduler/plan_validator.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <unordered_map>

#include "runtime/check.h"

namespace seqmesh::scheduler {
namespace {

class Report {
 public:
  explicit Report(size_t max) : max_(max) {}
  bool full() const { return errors_.size() >= max_; }
  std::ostream& Add(const char* rule) {
    current_.str("");
    current_.clear();
    current_ << "[" << rule << "] ";
    pending_ = true;
    return current_;
  }
  void Flush() {
    if (pending_ && !full()) errors_.push_back(current_.str());
    pending_ = false;
  }
  std::vector<std::string> Take() {
    Flush();
    return std::move(errors_);
  }

 private:
  size_t max_;
  std::vector<std::string> errors_;
  std::ostringstream current_;
  bool pending_ = false;
};

struct RingSeen {
  std::vector<int32_t> ranks;
  std::vector<bool> member_seen;
};

// One validation: the plan's indexes (sequence id -> batch index, ring id -> ring_order
// position), the token ranges seen per sequence and the ring members seen, and the report.
class Checker {
 public:
  Checker(const proto::StepPlan& plan, size_t max_errors) : plan_(plan), report_(max_errors) {}

  std::vector<std::string> Run() {
    const int n = plan_.num_ranks();
    if (n <= 0 || plan_.ranks_size() != n) {
      add("shape") << "num_ranks is " << n << " but the plan lists " << plan_.ranks_size()
                   << " ranks";
      return report_.Take();
    }
    if (plan_.capacity() == 0) add("capacity") << "capacity is 0";
    IndexSequences();
    IndexRings();
    for (int rank = 0; rank < n && !report_.full(); ++rank) CheckRank(rank);
    for (size_t i = 0; i < rings_.size(); ++i)
      for (size_t p = 0; p < rings_[i].ranks.size(); ++p)
        if (!rings_[i].member_seen[p])
          add("ring-members") << "ring " << plan_.ring_order(i).ring_id() << ": member rank "
                              << rings_[i].ranks[p] << " does not run it";
    CheckCoverage();
    return report_.Take();
  }

 private:
  std::ostream& add(const char* rule) {
    report_.Flush();
    return report_.Add(rule);
  }

  void IndexSequences() {
    for (int i = 0; i < plan_.sequences_size(); ++i)
      if (!seq_index_.emplace(plan_.sequences(i).id(), i).second)
        add("sequences") << "sequence " << plan_.sequences(i).id() << " listed twice in the batch";
    covered_.resize(plan_.sequences_size());
  }

  void IndexRings() {
    const int n = plan_.num_ranks();
    rings_.resize(plan_.ring_order_size());
    for (int i = 0; i < plan_.ring_order_size(); ++i) {
      const auto& op = plan_.ring_order(i);
      if (!order_pos_.emplace(op.ring_id(), i).second)
        add("ring-order") << "ring " << op.ring_id() << " appears twice in ring_order";
      rings_[i].ranks.assign(op.ranks().begin(), op.ranks().end());
      rings_[i].member_seen.assign(op.ranks_size(), false);
      std::vector<int32_t> sorted = rings_[i].ranks;
      std::sort(sorted.begin(), sorted.end());
      if (sorted.size() < 2)
        add("ring-order") << "ring " << op.ring_id() << " has fewer than 2 members";
      if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
        add("ring-members") << "ring " << op.ring_id() << " lists a rank twice";
      for (int32_t r : sorted)
        if (r < 0 || r >= n)
          add("ring-members") << "ring " << op.ring_id() << " lists rank " << r << " outside [0, "
                              << n << ")";
    }
  }

  void CheckRank(int rank) {
    const double l = std::max(1, plan_.layers_per_rank());
    const auto& rp = plan_.ranks(rank);
    if (rp.rank() != rank) add("shape") << "ranks[" << rank << "] is labelled rank " << rp.rank();
    int64_t last_order = -1;
    for (int m = 0; m < rp.micro_batches_size(); ++m) {
      const auto& mb = rp.micro_batches(m);
      const uint64_t tokens = CheckSegments(rank, m, mb);
      const double ratio = mb.offload_ratio();
      if (ratio < 0 || ratio > 1) {
        add("offload") << "rank " << rank << " micro-batch " << m << ": offload ratio " << ratio
                       << " outside [0, 1]";
      } else if (ratio > 0) {
        // Workers offload whole layers (Model::OffloadedLayersFor): r (l - 2) must be a count.
        const double middle = ratio * (l - 2);
        if (l < 3 || std::abs(middle - std::round(middle)) > 1e-6 || std::round(middle) < 1)
          add("offload") << "rank " << rank << " micro-batch " << m << ": offload ratio " << ratio
                         << " is not a multiple of 1/(l - 2) for l = " << l
                         << " layers per rank (whole layers leave)";
      }
      const double resident = l <= 2 ? tokens : tokens * (2 + (1 - ratio) * (l - 2)) / l;
      if (resident > plan_.capacity() * (1 + 1e-9))
        add("capacity") << "rank " << rank << " micro-batch " << m << " holds " << tokens
                        << " tokens (" << resident << " resident) > capacity " << plan_.capacity();
      if (mb.ring_size() > 1) CheckRingMember(rank, m, mb, last_order);
    }
  }

  // The micro-batch's token ranges (recorded for coverage); returns its tokens.
  uint64_t CheckSegments(int rank, int m, const proto::MicroBatch& mb) {
    uint64_t tokens = 0;
    for (const auto& seg : mb.segments()) {
      auto it = seq_index_.find(seg.sequence_id());
      if (it == seq_index_.end()) {
        add("unknown-sequence") << "rank " << rank << " micro-batch " << m << ": sequence "
                                << seg.sequence_id() << " is not in the batch";
        continue;
      }
      const uint64_t len = plan_.sequences(it->second).length();
      if (seg.restart_positions() && (mb.ring_size() > 1 || seg.ranges_size() != 1))
        add("restart-positions")
            << "rank " << rank << " micro-batch " << m << ": sequence " << seg.sequence_id()
            << " restarts positions but is not one range of a local micro-batch";
      for (const auto& r : seg.ranges()) {
        if (r.begin() >= r.end() || r.end() > len) {
          add("token-range") << "rank " << rank << " micro-batch " << m << ": sequence "
                             << seg.sequence_id() << " range [" << r.begin() << ", " << r.end()
                             << ") is empty or outside [0, " << len << ")";
          continue;
        }
        tokens += r.end() - r.begin();
        covered_[it->second].push_back({r.begin(), r.end()});
      }
    }
    return tokens;
  }

  // A ring micro-batch: listed in ring_order with the same members, at this rank's position,
  // once, and after the rings this rank ran before it (`last_order`, updated).
  void CheckRingMember(int rank, int m, const proto::MicroBatch& mb, int64_t& last_order) {
    auto pos = order_pos_.find(mb.ring_id());
    if (pos == order_pos_.end()) {
      add("ring-order") << "rank " << rank << " micro-batch " << m << ": ring " << mb.ring_id()
                        << " is not in ring_order";
      return;
    }
    RingSeen& seen = rings_[pos->second];
    if (!std::equal(mb.ring().begin(), mb.ring().end(), seen.ranks.begin(), seen.ranks.end())) {
      add("ring-members") << "rank " << rank << " lists ring " << mb.ring_id()
                          << " with members different from ring_order";
      return;
    }
    const int p = mb.ring_position();
    if (p < 0 || p >= mb.ring_size() || mb.ring(p) != rank) {
      add("ring-position") << "rank " << rank << " claims position " << p << " in ring "
                           << mb.ring_id() << " but is not that member";
      return;
    }
    if (seen.member_seen[p])
      add("ring-slot") << "rank " << rank << " joins ring " << mb.ring_id() << " twice";
    seen.member_seen[p] = true;
    if (static_cast<int64_t>(pos->second) <= last_order)
      add("ring-order") << "rank " << rank << " runs ring " << mb.ring_id()
                        << " after a ring that comes later in ring_order (deadlock)";
    last_order = static_cast<int64_t>(pos->second);
  }

  void CheckCoverage() {
    for (size_t i = 0; i < covered_.size() && !report_.full(); ++i) {
      auto& c = covered_[i];
      std::sort(c.begin(), c.end());
      uint64_t next = 0;
      const uint64_t id = plan_.sequences(i).id(), len = plan_.sequences(i).length();
      for (auto [b, e] : c) {
        if (b < next) {
          add("exactly-once") << "sequence " << id << ": tokens [" << b << ", " << std::min(e, next)
                              << ") assigned more than once";
        } else if (b > next) {
          add("exactly-once") << "sequence " << id << ": tokens [" << next << ", " << b
                              << ") not assigned";
        }
        next = std::max(next, e);
      }
      if (next < len)
        add("exactly-once") << "sequence " << id << ": tokens [" << next << ", " << len
                            << ") not assigned";
    }
  }

  const proto::StepPlan& plan_;
  Report report_;
  std::unordered_map<uint64_t, size_t> seq_index_;                   // sequence id -> batch index
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> covered_;  // sorted at the end
  std::unordered_map<uint64_t, size_t> order_pos_;                   // ring id -> ring_order
  std::vector<RingSeen> rings_;
};

}  // namespace

std::vector<std::string> ValidateStepPlan(const proto::StepPlan& plan, size_t max_errors) {
  return Checker(plan, max_errors).Run();
}

void CheckStepPlan(const proto::StepPlan& plan) {
  auto errors = ValidateStepPlan(plan, 5);
  if (errors.empty()) return;
  std::ostringstream os;
  os << "invalid StepPlan (" << plan.planner() << ", step " << plan.step() << "):";
  for (const auto& e : errors) os << "\n  " << e;
  SM_CHECK(false) << os.str();
}

}  // namespace seqmesh::scheduler
