// ZeRO-1 with each rank's shard offloaded (CTest: 2 ranks under mpirun): GradSync with its AdamW
// state on SSD or in pinned memory steps every rank's parameters and moments bitwise as
// GradSync in memory does, and each rank's store holds only its shard.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "offload/optimizer_store.h"
#include "parallel/grad_sync.h"
#include "tests/offload/offload_test_util.h"
#include "tests/parallel/mpi_test_main.h"
#include "tests/parallel/param_set.h"

namespace seqmesh {
namespace {

using testing::World;

// Tensors whose sizes do not divide by the rank count, in two buckets.
struct Model : testing::ParamSet {
  Model() : ParamSet({{37, 51}, {11}, {3, 701}, {1}, {130, 31}, {2901}}) {}
};

void FillGrads(Model& m, int rank, int step) {
  std::mt19937 rng(1000 * step + rank);
  std::normal_distribution<float> n(0.0f, 0.3f);
  for (auto& t : m.g)
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = n(rng);
}

std::vector<float> MomentsOf(const GradSync& sync) {
  std::vector<float> m, v;
  sync.ForEachMomentPiece([&](size_t, int64_t, const float* pm, const float* pv, int64_t len) {
    m.insert(m.end(), pm, pm + len);
    v.insert(v.end(), pv, pv + len);
  });
  m.insert(m.end(), v.begin(), v.end());
  return m;
}

void CheckOffloadedEqualsInMemory(OffloadDevice device) {
  Communicator& c = *World();
  OffloadConfig config;
  config.optimizer = device;
  const testing::ScratchDir dir;  // each rank its own
  config.nvme_path = dir.path();
  config.sub_group_size = 1500;  // several sub-groups per shard, pieces cut across them
  config.block_size = 16 << 10;
  OffloadedOptimizerStateStore* store = nullptr;
  auto factory = [&](std::span<const Tensor> params) -> std::unique_ptr<OptimizerStateStore> {
    auto s = std::make_unique<OffloadedOptimizerStateStore>(params, config, c.rank());
    store = s.get();
    return s;
  };
  Model mem, off;
  const std::vector<size_t> buckets = {3, 6};
  GradSync in_memory(c, mem.p, mem.g, AdamWConfig{}, buckets);
  GradSync offloaded(c, off.p, off.g, AdamWConfig{}, buckets, {}, factory);
  ASSERT_NE(store, nullptr);
  int64_t shard = 0;  // this rank's elements (the shard without its padding)
  offloaded.ForEachMomentPiece(
      [&](size_t, int64_t, const float*, const float*, int64_t len) { shard += len; });
  EXPECT_EQ(store->state_bytes(), 12u * shard) << "only this rank's shard";
  EXPECT_LT(2 * shard, 12 + int64_t{37 * 51 + 11 + 3 * 701 + 1 + 130 * 31 + 2901});
  for (int step = 1; step <= 3; ++step) {
    FillGrads(mem, c.rank(), step);
    FillGrads(off, c.rank(), step);
    const double a = in_memory.Step(1e-2f, 1.0f);
    const double b = offloaded.Step(1e-2f, 1.0f);
    ASSERT_EQ(a, b) << "norm at step " << step;
    for (size_t t = 0; t < mem.p.size(); ++t)
      ASSERT_EQ(0, std::memcmp(mem.p[t].data(), off.p[t].data(), mem.p[t].bytes()))
          << Name(device) << ": parameter " << t << " at step " << step << " on rank " << c.rank();
  }
  EXPECT_EQ(MomentsOf(in_memory), MomentsOf(offloaded)) << Name(device) << " on rank " << c.rank();
}

TEST(OffloadedZero1, ShardOnSsdStepsBitwiseAsInMemory) {
  CheckOffloadedEqualsInMemory(OffloadDevice::kNvme);
}
TEST(OffloadedZero1, ShardInPinnedMemoryStepsBitwiseAsInMemory) {
  CheckOffloadedEqualsInMemory(OffloadDevice::kCpu);
}

}  // namespace
}  // namespace seqmesh

int main(int argc, char** argv) {
  return seqmesh::testing::RunMpiTests(argc, argv, std::chrono::seconds(60));
}
