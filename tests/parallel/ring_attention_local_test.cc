// Ring attention on D in-process ranks (threads exchanging messages through mailboxes) against
// single-rank attention, and a model step with a mixed placement against the single-rank step.
// The same protocol runs over MPI in the multi-rank tests; this one needs no MPI.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

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

// Mailboxes keyed by (from, to, tag). Post copies the send at once (a buffered send).
class Mailboxes {
 public:
  void Send(int from, int to, int tag, const float* data, int64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    boxes_[{from, to, tag}].emplace_back(data, data + n);
    cv_.notify_all();
  }
  std::vector<float> Receive(int from, int to, int tag) {
    std::unique_lock<std::mutex> lock(mu_);
    auto& box = boxes_[{from, to, tag}];
    cv_.wait(lock, [&] { return !box.empty(); });
    std::vector<float> m = std::move(box.front());
    box.pop_front();
    return m;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<float>>> boxes_;
};

class ThreadLink : public RingLink {
 public:
  ThreadLink(Mailboxes& boxes, int rank) : boxes_(boxes), rank_(rank) {}
  void Post(int tag, const float* send, int64_t send_count, int to, float* recv, int64_t recv_count,
            int from) override {
    boxes_.Send(rank_, to, tag, send, send_count);
    pending_[tag] = {recv, recv_count, from};
  }
  void Complete(int tag) override {
    Pending p = pending_.at(tag);
    std::vector<float> m = boxes_.Receive(p.from, rank_, tag);
    ASSERT_EQ(static_cast<int64_t>(m.size()), p.count) << "message size, tag " << tag;
    std::memcpy(p.recv, m.data(), m.size() * sizeof(float));
    pending_.erase(tag);
  }

 private:
  struct Pending {
    float* recv;
    int64_t count;
    int from;
  };
  Mailboxes& boxes_;
  int rank_;
  std::map<int, Pending> pending_;
};

// Exact layout for a crafted case: 10 tokens on 2 ranks are 4 chunks of 3, 3, 2, 2; position 0
// holds chunks 0 and 3, position 1 chunks 1 and 2.
TEST(ZigzagLayout, CutsIntoTwoChunksPerRankAndPairsThemSymmetrically) {
  ZigzagLayout z(10, 2);
  EXPECT_EQ(z.ChunkBegin(0), 0);
  EXPECT_EQ(z.ChunkBegin(1), 3);
  EXPECT_EQ(z.ChunkBegin(2), 6);
  EXPECT_EQ(z.ChunkBegin(3), 8);
  EXPECT_EQ(z.ChunkEnd(3), 10);
  EXPECT_EQ(z.LocalTokens(0), 5);
  EXPECT_EQ(z.LocalTokens(1), 5);
  const std::vector<int64_t> p0 = {0, 1, 2, 8, 9}, p1 = {3, 4, 5, 6, 7};
  for (int r = 0; r < 5; ++r) {
    EXPECT_EQ(z.GlobalIndex(0, r), p0[r]);
    EXPECT_EQ(z.GlobalIndex(1, r), p1[r]);
  }
  // 100 tokens on 3 ranks: chunks 17,17,17,17,16,16; the middle position holds 34.
  ZigzagLayout odd(100, 3);
  EXPECT_EQ(odd.LocalTokens(0), 33);
  EXPECT_EQ(odd.LocalTokens(2), 34);
  EXPECT_EQ(odd.MaxLocalTokens(), 34);
  EXPECT_THROW(ZigzagLayout(0, 2), Error);
  EXPECT_THROW(ZigzagLayout(10, 0), Error);
}

struct RingCase {
  int ring;
  int64_t len;
};

class RingAttentionLocal : public ::testing::TestWithParam<RingCase> {};

TEST_P(RingAttentionLocal, EqualsSingleRankForwardAndBackward) {
  const int D = GetParam().ring;
  const testing::RingCheck check(GetParam().len, 1);
  std::vector<int> ring(D);
  for (int i = 0; i < D; ++i) ring[i] = (D - i) % D;  // world ranks in another order than positions
  Mailboxes boxes;
  std::vector<std::thread> threads;
  for (int pos = 0; pos < D; ++pos) {
    threads.emplace_back([&, pos] {
      ThreadLink link(boxes, ring[pos]);
      check.RunAndCheck(pos, ring, link, "position " + std::to_string(pos));
    });
  }
  for (auto& t : threads) t.join();
}

INSTANTIATE_TEST_SUITE_P(Rings, RingAttentionLocal,
                         ::testing::Values(RingCase{1, 37}, RingCase{2, 64}, RingCase{2, 37},
                                           RingCase{3, 90}, RingCase{3, 100}, RingCase{4, 64},
                                           RingCase{4, 301}, RingCase{4, 5}, RingCase{3, 3}),
                         [](const auto& info) {
                           return "D" + std::to_string(info.param.ring) + "_s" +
                                  std::to_string(info.param.len);
                         });

// A full model step with a mixed placement (tests/parallel/mixed_placement.h): the four ranks'
// losses and gradients add up to one rank running all three documents.
TEST(RingAttentionModel, MixedPlacementStepEqualsSingleRankStep) {
  const testing::MixedPlacement scenario;
  Model reference = scenario.NewModel();
  const float ref_loss = scenario.ReferenceStep(reference);
  reference.Backward();

  Mailboxes boxes;
  std::vector<float> losses(testing::MixedPlacement::kRanks);
  std::vector<std::vector<float>> grads(testing::MixedPlacement::kRanks);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < testing::MixedPlacement::kRanks; ++rank) {
    threads.emplace_back([&, rank] {
      Model model = scenario.NewModel();
      ThreadLink link(boxes, rank);
      losses[rank] = scenario.RankStep(rank, model, link);
      for (const Tensor& g : model.grads())
        grads[rank].insert(grads[rank].end(), g.f32(), g.f32() + g.numel());
    });
  }
  for (auto& t : threads) t.join();
  float loss = 0;
  for (float l : losses) loss += l;
  EXPECT_NEAR(loss, ref_loss, 1e-5 * ref_loss);
  std::vector<float> sum(grads[0].size(), 0.0f);
  for (const auto& g : grads)
    for (size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
  size_t offset = 0;
  for (const Tensor& g : reference.grads()) {
    EXPECT_LT(RelError(sum.data() + offset, g.f32(), g.numel()), 1e-5) << g.name();
    offset += g.numel();
  }
}

}  // namespace
}  // namespace seqmesh
