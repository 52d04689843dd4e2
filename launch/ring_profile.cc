#include "launch/ring_profile.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <tuple>
#include <utility>

#include "launch/format.h"
#include "parallel/hdp_step.h"
#include "parallel/mpi/mpi_handles.h"
#include "parallel/mpi_ring_link.h"
#include "runtime/check.h"
#include "runtime/model.h"
#include "scheduler/plan.h"

namespace seqmesh::launch {
namespace {

// The step plan of one ring size: a ring of ranks 0..d-1 over one sequence of d * c tokens
// (d = 1: every rank), and, with `others_local`, one local sequence of c tokens on every other
// rank (else they have nothing to run).
proto::StepPlan RingPlan(int ranks, int d, int64_t c, uint64_t step, bool others_local) {
  scheduler::Plan plan;
  plan.planner = "profile";
  plan.capacity = c;
  plan.num_ranks = ranks;
  int r = 0;
  for (; r + d <= ranks && (d == 1 || r == 0); r += d) {
    scheduler::WorkItem item;
    item.sequences.push_back(static_cast<int32_t>(plan.lengths.size()));
    plan.lengths.push_back(c * d);
    for (int k = 0; k < d; ++k) item.ring.push_back(r + k);
    plan.items.push_back(item);
  }
  for (; others_local && r < ranks; ++r) {
    scheduler::WorkItem item;
    item.sequences.push_back(static_cast<int32_t>(plan.lengths.size()));
    plan.lengths.push_back(c);
    item.ring.push_back(r);
    plan.items.push_back(item);
  }
  scheduler::CostModel unit;  // estimates are not used here
  unit.b1 = 1;
  return scheduler::ToStepPlan(unit, plan, step);
}

}  // namespace

namespace {

// (ring size, others busy, tokens per rank) -> the repetitions' times.
using RingKey = std::tuple<int, bool, int64_t>;
struct RingTimes {
  std::vector<double> pass, sync, wait;
};

// The ring sizes measured, each with the other ranks idle and, where some rank is outside the
// ring, busy; D = 1 and D = N leave no rank outside: measured once, as "others idle".
std::vector<std::pair<int, bool>> RingKinds(int ranks) {
  std::vector<std::pair<int, bool>> kinds;
  for (int d = 1; d <= ranks; ++d) {
    kinds.push_back({d, false});
    if (d > 1 && d < ranks) kinds.push_back({d, true});
  }
  return kinds;
}

// Each kind's medians, and the spread of its pass times.
std::vector<RingSample> SamplesOf(const std::map<RingKey, RingTimes>& times) {
  std::vector<RingSample> out;
  for (const auto& [key, t] : times) {
    RingSample s;
    s.ring_size = std::get<0>(key);
    s.others_busy = std::get<1>(key);
    s.tokens_per_rank = std::get<2>(key);
    s.pass_ms = Median(t.pass);
    s.sync_ms = Median(t.sync);
    s.wait_ms = Median(t.wait);
    const auto [lo, hi] = std::minmax_element(t.pass.begin(), t.pass.end());
    s.spread = s.pass_ms > 0 ? (*hi - *lo) / s.pass_ms : 0;
    out.push_back(s);
  }
  return out;
}

}  // namespace

std::vector<RingSample> MeasureRings(MpiCommunicator& comm, const RunConfig& config,
                                     const std::vector<int64_t>& tokens_per_rank, int reps,
                                     const ExecutionContext& context) {
  const int ranks = comm.size();
  SM_CHECK(ranks >= 2) << "--rings needs >= 2 MPI ranks (run seqmesh profile under mpirun -n N)";
  SM_CHECK(!tokens_per_rank.empty()) << "--rings: no per-rank token counts";
  const int64_t most = *std::max_element(tokens_per_rank.begin(), tokens_per_rank.end());
  mpi::Comm ring_comm(comm.comm());
  mpi::Comm done_comm(comm.comm());  // the ring's "done" to the ranks running local passes
  MpiRingLink link(ring_comm.get(), comm.options().deadline);
  HdpStepOptions step_options;
  step_options.capacity = most;
  step_options.checkpoint_layers.assign(
      config.model.layers, config.training.checkpoint_activations != CheckpointMode::kOff);
  step_options.backend = MakeBackend(Device::kCpu, context);
  HdpStep hdp(config.model, step_options, comm, link, config.adamw());
  hdp.model().InitRandom(static_cast<uint64_t>(config.training.seed));
  const int64_t vocab = config.model.vocab;
  auto read = [&](uint64_t seq, int64_t begin, int64_t end, std::vector<int32_t>& out) {
    for (int64_t i = begin; i < end; ++i)
      out.push_back(static_cast<int32_t>((seq * 7919 + static_cast<uint64_t>(i) * 104729) %
                                         static_cast<uint64_t>(vocab)));
  };

  std::map<RingKey, RingTimes> times;
  uint64_t step = 0;
  auto run = [&](int d, bool others_busy, int64_t c, RingTimes* into) {
    const proto::StepPlan plan = RingPlan(ranks, d, c, step++, others_busy);
    uint64_t targets = 0;
    for (const auto& s : plan.sequences()) targets += s.length();
    comm.Barrier();
    const double wait_before = link.wait_ms();
    // others_busy: a rank outside the ring runs local passes until the ring is done, as ranks
    // beside a ring often do in a step: competitors for the cores that never wait. Else they
    // wait in the sync below, as ranks with nothing left or in other rings' waits do.
    const bool in_ring = d == 1 || comm.rank() < d || !others_busy;
    int signal = 0;
    MPI_Request done = MPI_REQUEST_NULL;
    if (!in_ring) MPI_Irecv(&signal, 1, MPI_INT, 0, 0, done_comm.get(), &done);
    const StepResult r = hdp.Execute(plan, targets, read, HdpStep::Overlap::kNone);
    if (!in_ring) {
      for (int finished = 0;;) {
        MPI_Test(&done, &finished, MPI_STATUS_IGNORE);
        if (finished) break;
        hdp.Execute(plan, targets, read, HdpStep::Overlap::kNone);
      }
    } else if (d > 1 && comm.rank() == 0) {
      for (int k = d; k < ranks; ++k) MPI_Send(&signal, 1, MPI_INT, k, 0, done_comm.get());
    }
    const double wait_ms = link.wait_ms() - wait_before;
    const auto t0 = std::chrono::steady_clock::now();
    hdp.Update(static_cast<float>(config.optimizer.lr),
               static_cast<float>(config.training.grad_clip));
    const double sync_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (into) {
      into->pass.push_back(r.compute_ms);
      into->sync.push_back(sync_ms);
      into->wait.push_back(wait_ms);
    }
  };
  const std::vector<std::pair<int, bool>> kinds = RingKinds(ranks);
  for (auto [d, busy] : kinds)
    for (int64_t c : tokens_per_rank) run(d, busy, c, nullptr);  // untimed: pages, connections
  for (int rep = 0; rep < reps; ++rep)
    for (auto [d, busy] : kinds)
      for (int64_t c : tokens_per_rank) run(d, busy, c, &times[{d, busy, c}]);
  if (comm.rank() != 0) return {};
  return SamplesOf(times);
}

}  // namespace seqmesh::launch
