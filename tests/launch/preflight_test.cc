// Pre-flight's memory estimate (launch/preflight.h) with the optimizer offloaded (issue 14): what
// leaves memory is subtracted, what the pinned arena holds is added.
#include "launch/preflight.h"

#include <gtest/gtest.h>

#include "offload/optimizer_store.h"

namespace seqmesh::launch {
namespace {

RunConfig Config(OffloadDevice device) {
  RunConfig c;
  c.model.vocab = 259;
  c.model.hidden = 1024;
  c.model.layers = 10;
  c.model.heads = 16;
  c.model.kv_heads = 4;
  c.model.ffn = 2816;
  c.training.global_batch_tokens = c.training.micro_batch_tokens = 256;
  c.offload.optimizer = device;
  c.Validate();
  return c;
}

TEST(PreflightEstimate, OffloadTakesTheStateOutAndAddsTheArena) {
  const double p = static_cast<double>(Config(OffloadDevice::kNone).model.NumParams());
  const double none = EstimatedRankBytes(Config(OffloadDevice::kNone), 1);
  const double nvme = EstimatedRankBytes(Config(OffloadDevice::kNvme), 1);
  const double cpu = EstimatedRankBytes(Config(OffloadDevice::kCpu), 1);
  // One rank in memory: weights, gradients, m and v, 16 bytes per parameter, plus activations.
  const double acts = none - 16 * p;
  EXPECT_GT(acts, 0);
  // On SSD with the gradients handed off (one micro-batch per step): the weights, about two
  // layers' gradients and the staging arena.
  const double arena = static_cast<double>(OffloadedOptimizerStateStore::ArenaBytes(
      static_cast<int64_t>(p), Config(OffloadDevice::kNvme).offload, true));
  EXPECT_DOUBLE_EQ(nvme, 4 * p * (1 + 2.0 / 10) + arena + acts);
  EXPECT_LT(nvme, 0.5 * none);  // the activations stay in memory
  // In pinned host memory the moments and the master copy are in the arena: 12 bytes per
  // parameter instead of 8 in memory.
  EXPECT_DOUBLE_EQ(cpu, 8 * p + 12 * p + acts);
  // Several micro-batches per step: every gradient is resident until the last one.
  RunConfig several = Config(OffloadDevice::kNvme);
  several.training.global_batch_tokens = 1024;
  EXPECT_GT(EstimatedRankBytes(several, 1), nvme + 3 * p);
  // Four ranks: each keeps the flat reduction buffers and offloads only its shard's moments.
  const double none4 = EstimatedRankBytes(Config(OffloadDevice::kNone), 4);
  const double nvme4 = EstimatedRankBytes(Config(OffloadDevice::kNvme), 4);
  EXPECT_NEAR(
      none4 - nvme4,
      8 * p / 4 - static_cast<double>(OffloadedOptimizerStateStore::ArenaBytes(
                      static_cast<int64_t>(p / 4), Config(OffloadDevice::kNvme).offload, false)),
      1.0);
}

}  // namespace
}  // namespace seqmesh::launch
