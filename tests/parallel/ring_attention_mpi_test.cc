// Ring attention across real MPI processes (run by CTest under mpirun with 2, 3 and 4 ranks):
// rings of every size 1..N on the world communicator equal single-rank attention forward and
// backward; two disjoint rings run at once; a mixed placement (a long document over three
// ranks, two short documents on the fourth), run through HdpStep, gives the single-rank model step
// and, with ZeRO-1, the single-rank AdamW step; and a ring member
// that stops answering makes the others fail with a named error within the deadline.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "parallel/hdp_step.h"
#include "parallel/mpi/mpi_communicator.h"
#include "parallel/mpi_ring_link.h"
#include "parallel/ring_attention.h"
#include "runtime/layers.h"
#include "runtime/model.h"
#include "tests/parallel/mixed_placement.h"
#include "tests/parallel/ring_check.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using testing::RandomVector;
using testing::RelError;

int WorldRank() {
  int r;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int WorldSize() {
  int n;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

constexpr std::chrono::milliseconds kDeadline{20000};

// Runs ring attention for a sequence of length s over `ring` (world ranks in ring order) and,
// on members, compares the local rows with single-rank attention of the whole sequence.
void CheckRing(const std::vector<int>& ring, int64_t s, uint32_t seed) {
  const auto pos_it = std::find(ring.begin(), ring.end(), WorldRank());
  if (pos_it == ring.end()) return;
  MpiRingLink link(MPI_COMM_WORLD, kDeadline);
  testing::RingCheck(s, seed).RunAndCheck(static_cast<int>(pos_it - ring.begin()), ring, link,
                                          "rank " + std::to_string(WorldRank()) + " ring size " +
                                              std::to_string(ring.size()) + " s " +
                                              std::to_string(s));
}

TEST(RingAttentionMpi, EveryRingSizeEqualsSingleRank) {
  const int n = WorldSize();
  for (int d = 1; d <= n; ++d) {
    std::vector<int> ring(d);
    for (int i = 0; i < d; ++i) ring[i] = (d - 1 - i);  // reversed: positions != world ranks
    for (int64_t s : {8 * d, 8 * d + 3, 97}) CheckRing(ring, s, 100 + d);
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

TEST(RingAttentionMpi, TwoDisjointRingsAtOnce) {
  if (WorldSize() < 4) GTEST_SKIP() << "needs 4 ranks";
  // Ranks {0, 2} and {3, 1} each run their own sequence at the same time, same tags.
  CheckRing({0, 2}, 70, 7);
  CheckRing({3, 1}, 45, 9);
  MPI_Barrier(MPI_COMM_WORLD);
}

// Each rank runs its part of the scenario's plan through HdpStep (as a worker does), without
// the update, so the gradients can be compared before any reduction.
TEST(RingAttentionMpi, MixedPlacementModelStepEqualsSingleRank) {
  if (WorldSize() != testing::MixedPlacement::kRanks) GTEST_SKIP() << "needs exactly 4 ranks";
  const testing::MixedPlacement scenario;
  Model reference = scenario.NewModel();
  const float ref_loss = scenario.ReferenceStep(reference);
  reference.Backward();
  MpiCommunicator comm(MPI_COMM_WORLD, CommOptions{kDeadline});
  MpiRingLink link(MPI_COMM_WORLD, kDeadline);
  HdpStep hdp(scenario.config(), {scenario.capacity(), {}, nullptr, {}}, comm, link, AdamWConfig{});
  hdp.model().InitRandom(99, 0.2f);
  const Model& model = hdp.model();
  auto read = [&](uint64_t s, int64_t b, int64_t e, std::vector<int32_t>& out) {
    scenario.Read(s, b, e, out);
  };
  const uint64_t targets = static_cast<uint64_t>(scenario.normalizer());
  float loss =
      static_cast<float>(hdp.Execute(scenario.Plan(), targets, read, HdpStep::Overlap::kNone).loss);
  // Token-level loss: the ranks' losses and gradients add up to the whole batch's.
  MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_NEAR(loss, ref_loss, 1e-5 * ref_loss);
  for (size_t i = 0; i < model.grads().size(); ++i) {
    const Tensor& g = model.grads()[i];
    MPI_Allreduce(MPI_IN_PLACE, g.f32(), static_cast<int>(g.numel()), MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
    EXPECT_LT(RelError(g.f32(), reference.grads()[i].f32(), g.numel()), 1e-5) << g.name();
  }
}

// The whole distributed step through HdpStep: the plan's passes, each finished layer's bucket
// handed to ZeRO-1 gradient sync during the last backward (reduce-scatter started while
// backward continues), then the sharded AdamW step with global-norm clipping; every rank ends
// with the parameters of one rank running all documents and unsharded AdamW.
TEST(RingAttentionMpi, MixedPlacementStepWithZero1EqualsSingleRankAdamW) {
  if (WorldSize() != testing::MixedPlacement::kRanks) GTEST_SKIP() << "needs exactly 4 ranks";
  const testing::MixedPlacement scenario;
  const AdamWConfig adamw_config;
  const float lr = 1e-2f, clip = 0.5f;
  Model reference = scenario.NewModel();
  scenario.ReferenceStep(reference);
  reference.Backward();
  const double ref_norm = GlobalNorm(reference.grads());
  AdamW adamw(reference.params(), adamw_config);
  adamw.Step(reference.params(), reference.grads(), lr, ClipScale(ref_norm, clip));

  MpiCommunicator comm(MPI_COMM_WORLD, CommOptions{kDeadline});
  const int64_t layers = scenario.config().layers;
  MpiRingLink link(MPI_COMM_WORLD, kDeadline);
  HdpStep hdp(scenario.config(), {scenario.capacity(), {}, nullptr, {}}, comm, link, adamw_config);
  hdp.model().InitRandom(99, 0.2f);
  const Model& model = hdp.model();
  ASSERT_EQ(hdp.sync().num_buckets(), layers + 2);
  auto read = [&](uint64_t s, int64_t b, int64_t e, std::vector<int32_t>& out) {
    scenario.Read(s, b, e, out);
  };
  const HdpStepResult result =
      hdp.Run(scenario.Plan(), static_cast<uint64_t>(scenario.normalizer()), read, lr, clip);
  const double norm = result.grad_norm;
  // GradSync sums squares in f64 over shards, GlobalNorm in f32 per chunk: ~1e-7 apart.
  EXPECT_NEAR(norm, ref_norm, 1e-6 * ref_norm);
  // At AdamW's first step every element moves by about lr * sign(gradient), whatever the
  // gradient's size, so an element whose summed gradient is ~0 can move the other way when the
  // sum is taken in another order (ranks vs one process: gradients agree to ~1e-6, see the test
  // above). Such elements are rare; all others must agree to 1e-5 of lr.
  int64_t elements = 0, flipped = 0;
  for (size_t i = 0; i < model.params().size(); ++i) {
    const Tensor& p = model.params()[i];
    const float* want = reference.params()[i].f32();
    for (int64_t k = 0; k < p.numel(); ++k) {
      const float diff = std::fabs(p.f32()[k] - want[k]);
      ASSERT_LE(diff, 2.05f * lr) << p.name() << "[" << k << "] moved more than one update";
      flipped += diff > 1e-5f * lr;
      ++elements;
    }
  }
  EXPECT_LT(flipped, elements / 1000) << flipped << " of " << elements << " elements differ";
  // And every rank holds the same parameters after the all-gather.
  for (const Tensor& p : model.params()) {
    std::vector<float> root(p.f32(), p.f32() + p.numel());
    MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
    EXPECT_EQ(0, std::memcmp(root.data(), p.f32(), p.bytes())) << p.name();
  }
}

// Rank 1 never joins the ring; rank 0's exchange must fail within the deadline, naming the
// peers. A communicator of its own keeps the unanswered messages away from later tests.
TEST(RingAttentionMpi, SilentRingMemberFailsWithNamedErrorWithinDeadline) {
  if (WorldSize() < 2) GTEST_SKIP() << "needs 2 ranks";
  MPI_Comm comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  if (WorldRank() == 0) {
    const AttentionDims dims{2, 1, 4};
    ZigzagLayout layout(8, 2);
    std::vector<float> q(4 * 8, 0.5f), kv(4 * 4, 0.5f), out(4 * 8), lse(2 * 4);
    MpiRingLink link(comm, std::chrono::milliseconds(1000));
    RingAttention ra(dims, layout, 0, {0, 1}, link);
    const auto start = std::chrono::steady_clock::now();
    try {
      ra.Forward(*MakeBackend(Device::kCpu, {}), {q.data(), 8}, {kv.data(), 4}, {kv.data(), 4},
                 {out.data(), 8}, lse.data(), 4);
      ADD_FAILURE() << "the exchange with a silent rank completed";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("timed out after 1000 ms"), std::string::npos) << m;
      EXPECT_NE(m.find("sending to rank 1 and receiving from rank 1"), std::string::npos) << m;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(secs, 5.0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Comm_free(&comm);
}

}  // namespace
}  // namespace seqmesh

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  // Every rank runs every test; the job fails if any rank failed.
  int worst = result;
  MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
