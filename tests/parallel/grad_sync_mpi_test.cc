// ZeRO-1 gradient sync over real MPI processes (CTest: 2, 3 and 4 ranks): a sharded AdamW step
// over the summed gradients of all ranks equals the unsharded runtime AdamW on one rank over the
// same summed gradients. Gradients are multiples of 2^-12 of modest size, so their sum is exact
// in f32 in any order; the update then runs the same kernel on the same numbers, and the
// parameters must be bitwise equal. With clipping, the norm is summed in a different order
// (shards, then ranks) than runtime's GlobalNorm, so the clip factor may differ in the last bit:
// there the test allows a relative error of 1e-6 (runtime's GlobalNorm accumulates squares in
// f32 lanes, GradSync in f64, so the norms differ by about 1e-7 relative).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "parallel/grad_sync.h"
#include "tests/parallel/mpi_test_main.h"
#include "tests/parallel/param_set.h"

namespace seqmesh {
namespace {

using testing::World;

// Tensors of mixed rank (so weight decay differs) whose sizes do not divide by 2, 3 or 4.
struct Model : testing::ParamSet {
  Model() : ParamSet({{37, 5}, {11}, {3, 7}, {1}, {13, 3}, {29}}) {}
};

// Rank r's gradient at step k: an exact multiple of 2^-12 in [-0.25, 0.25].
void FillGrads(Model& m, int rank, int step) {
  std::mt19937 rng(1000 * step + rank);
  std::uniform_int_distribution<int> u(-1024, 1024);
  for (auto& t : m.g)
    for (int64_t i = 0; i < t.numel(); ++i)
      t.f32()[i] = std::ldexp(static_cast<float>(u(rng)), -12);
}

// uneven_ready: ranks mark buckets ready in different orders, and some never (a rank with no
// micro-batch this step); the reductions must still start in one order everywhere.
void RunBoth(float max_norm, std::vector<size_t> buckets, bool expect_bitwise,
             bool uneven_ready = false) {
  Communicator& c = *World();
  AdamWConfig config;
  config.weight_decay = 0.1f;
  Model sharded, reference;
  GradSync sync(c, sharded.p, sharded.g, config, buckets);
  AdamW adamw(reference.p, config);
  for (int step = 1; step <= 3; ++step) {
    const float lr = 1e-2f * step;
    FillGrads(sharded, c.rank(), step);
    // Buckets become ready in reverse order, as backward finishes layers.
    const int pattern = uneven_ready ? (c.rank() + step) % 3 : 0;
    if (pattern == 0)
      for (int b = sync.num_buckets() - 1; b >= 0; --b) sync.LayerReady(b);
    else if (pattern == 2)
      for (int b = 0; b < sync.num_buckets(); ++b) sync.LayerReady(b);
    const double norm = sync.Step(lr, max_norm);

    // The reference: every rank's gradient summed in rank order, unsharded AdamW.
    for (auto& t : reference.g) std::fill(t.f32(), t.f32() + t.numel(), 0.0f);
    Model tmp;
    for (int r = 0; r < c.size(); ++r) {
      FillGrads(tmp, r, step);
      for (size_t i = 0; i < reference.g.size(); ++i)
        for (int64_t j = 0; j < reference.g[i].numel(); ++j)
          reference.g[i].f32()[j] += tmp.g[i].f32()[j];
    }
    const double ref_norm = GlobalNorm(reference.g);
    adamw.Step(reference.p, reference.g, lr, ClipScale(ref_norm, max_norm));
    // GlobalNorm sums squares in f32 vector lanes per chunk; GradSync in f64 per shard.
    EXPECT_NEAR(norm, ref_norm, 1e-6 * ref_norm) << "step " << step;
    for (size_t i = 0; i < reference.p.size(); ++i)
      for (int64_t j = 0; j < reference.p[i].numel(); ++j) {
        const float a = sharded.p[i].f32()[j], b = reference.p[i].f32()[j];
        if (expect_bitwise)
          ASSERT_EQ(a, b) << sharded.p[i].name() << "[" << j << "] step " << step;
        else
          ASSERT_NEAR(a, b, 1e-6f * std::max(1.0f, std::fabs(b)))
              << sharded.p[i].name() << "[" << j << "] step " << step;
      }
  }
  EXPECT_LE(sync.shard_elements() * c.size(),
            static_cast<int64_t>(185 + 11 + 21 + 1 + 39 + 29) + c.size() * sync.num_buckets());
}

TEST(GradSync, Zero1OneBucketEqualsUnshardedAdamWBitwise) { RunBoth(0.0f, {}, true); }

TEST(GradSync, Zero1PerLayerBucketsEqualsUnshardedAdamWBitwise) {
  RunBoth(0.0f, {1, 3, 4, 6}, true);
}

TEST(GradSync, Zero1WithGlobalNormClippingMatchesUnsharded) {
  // max_norm well below the norm, so the clip factor is active.
  RunBoth(0.05f, {2, 6}, false);
}

TEST(GradSync, RanksMarkingBucketsReadyInDifferentOrdersOrNotAtAll) {
  RunBoth(0.0f, {1, 3, 4, 6}, true, /*uneven_ready=*/true);
}

TEST(GradSync, RejectsMismatchedBuckets) {
  Model m;
  EXPECT_THROW(GradSync(*World(), m.p, m.g, AdamWConfig{}, {3, 6}, {0, 0}), Error);
  EXPECT_THROW(GradSync(*World(), m.p, m.g, AdamWConfig{}, {3, 6}, {1}), Error);
  EXPECT_THROW(GradSync(*World(), m.p, m.g, AdamWConfig{}, {2, 5}), Error);
  EXPECT_THROW(GradSync(*World(), m.p, m.g, AdamWConfig{}, {3, 2, 6}), Error);
}

}  // namespace
}  // namespace seqmesh

int main(int argc, char** argv) {
  return seqmesh::testing::RunMpiTests(argc, argv, std::chrono::seconds(30));
}
