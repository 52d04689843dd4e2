// Byte tokenizer, global batches by tokens (each sequence once per epoch, deterministic,
// resumable from the cursor) and packing into micro-batches (exact for a crafted case;
// invariants on random ones).
#include "runtime/batch_sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/tokenizer.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

TEST(ByteTokenizer, RoundTripsBytesAndDropsSpecials) {
  ByteTokenizer t;
  std::vector<int32_t> ids = {t.bos()};
  t.Encode("h\xc3\xa9\n\x01", ids);
  ids.push_back(t.eos());
  EXPECT_EQ(ids, (std::vector<int32_t>{256, 'h', 0xc3, 0xa9, '\n', 1, 257}));
  EXPECT_EQ(t.Decode(ids), "h\xc3\xa9\n\x01");
  EXPECT_EQ(t.vocab_size(), 259);
  const std::vector<int32_t> bad = {65, 300};
  try {
    t.Decode(bad);
    ADD_FAILURE() << "id 300 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 300 at position 1"), std::string::npos);
  }
}

std::vector<int32_t> RandomLengths(int n, uint32_t seed, int max_len) {
  std::mt19937 rng(seed);
  std::vector<int32_t> l(n);
  for (auto& x : l) x = static_cast<int32_t>(rng() % (max_len + 1));  // some zeros
  return l;
}

TEST(GlobalBatchSampler, DrawsEverySequenceOncePerEpochWithinTheBudget) {
  const auto lengths = RandomLengths(500, 1, 300);
  const int64_t budget = 1000;
  GlobalBatchSampler s(lengths, 42, budget);
  int64_t nonempty = 0;
  for (int32_t l : lengths) nonempty += l > 0;
  DataCursor cursor;
  std::vector<int64_t> drawn;
  while (static_cast<int64_t>(drawn.size()) < 2 * nonempty) {
    const DataCursor before = cursor;
    const auto batch = s.Next(cursor);
    ASSERT_FALSE(batch.empty());
    int64_t tokens = 0;
    for (int64_t id : batch) tokens += lengths[id];
    EXPECT_TRUE(tokens <= budget || batch.size() == 1) << "batch over budget";
    EXPECT_NE(before, cursor);
    drawn.insert(drawn.end(), batch.begin(), batch.end());
  }
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::set<int64_t> ids(drawn.begin() + epoch * nonempty, drawn.begin() + (epoch + 1) * nonempty);
    EXPECT_EQ(static_cast<int64_t>(ids.size()), nonempty) << "epoch " << epoch;
    for (int64_t id : ids) EXPECT_GT(lengths[id], 0);
  }
  // Epochs use different orders.
  EXPECT_FALSE(std::equal(drawn.begin(), drawn.begin() + nonempty, drawn.begin() + nonempty));
}

TEST(GlobalBatchSampler, BatchesAreFullAndALongSequenceStandsAlone) {
  // Budget 10: lengths 4, 4, 4 -> [4, 4] then [4, ...]; 25 -> alone.
  const std::vector<int32_t> lengths = {4, 4, 4, 25};
  GlobalBatchSampler s(lengths, 7, 10);
  DataCursor c;
  for (int i = 0; i < 6; ++i) {
    const auto batch = s.Next(c);
    int64_t tokens = 0;
    for (int64_t id : batch) tokens += lengths[id];
    if (std::find(batch.begin(), batch.end(), 3) != batch.end()) {
      EXPECT_EQ(batch.size(), 1u) << "the 25-token sequence exceeds the budget on its own";
    } else {
      EXPECT_LE(tokens, 10);
    }
  }
}

TEST(GlobalBatchSampler, DeterministicAndResumableFromTheCursor) {
  const auto lengths = RandomLengths(300, 2, 500);
  GlobalBatchSampler a(lengths, 9, 2048), b(lengths, 9, 2048), other(lengths, 10, 2048);
  DataCursor ca, cb, co;
  std::vector<std::vector<int64_t>> first;
  for (int i = 0; i < 40; ++i) {
    first.push_back(a.Next(ca));
    EXPECT_EQ(first.back(), b.Next(cb));
  }
  bool differs = false;
  for (int i = 0; i < 5; ++i) differs |= other.Next(co) != first[i];
  EXPECT_TRUE(differs) << "another seed drew the same batches";
  // Save the cursor at step 17, continue from it with a fresh sampler.
  DataCursor saved;
  GlobalBatchSampler c(lengths, 9, 2048);
  for (int i = 0; i < 17; ++i) c.Next(saved);
  GlobalBatchSampler resumed(lengths, 9, 2048);
  for (int i = 17; i < 40; ++i) EXPECT_EQ(resumed.Next(saved), first[i]) << "step " << i;
}

TEST(GlobalBatchSampler, RejectsBadInput) {
  EXPECT_THROW(GlobalBatchSampler({0, 0}, 1, 10), Error);
  EXPECT_THROW(GlobalBatchSampler({1, -2}, 1, 10), Error);
  EXPECT_THROW(GlobalBatchSampler({1}, 1, 0), Error);
}

TEST(PackMicroBatches, BestFitDecreasingOnACraftedCase) {
  // Capacity 8, lengths 5, 3, 2, 7 -> [7], [5, 3], [2]; a 20-token sequence -> 8, 8, 4 pieces.
  const std::vector<int64_t> ids = {10, 11, 12, 13};
  const std::vector<int32_t> lengths = {5, 3, 2, 7};
  PackResult r = PackMicroBatches(ids, lengths, 8);
  ASSERT_EQ(r.micro_batches.size(), 3u);
  EXPECT_EQ(r.micro_batches[0].pieces[0].id, 13);
  EXPECT_EQ(r.micro_batches[1].cu_seqlens, (std::vector<int32_t>{0, 5, 8}));
  EXPECT_EQ(r.micro_batches[2].pieces[0].id, 12);
  EXPECT_EQ(r.cut_sequences, 0);
  const std::vector<int64_t> long_id = {99};
  const std::vector<int32_t> long_len = {20};
  r = PackMicroBatches(long_id, long_len, 8);
  EXPECT_EQ(r.cut_sequences, 1);
  ASSERT_EQ(r.micro_batches.size(), 3u);
  EXPECT_EQ(r.micro_batches[2].pieces[0].begin, 16);
  EXPECT_EQ(r.micro_batches[2].pieces[0].length, 4);
}

TEST(PackMicroBatches, EveryTokenOnceAndCapacityHeldOnRandomBatches) {
  for (uint32_t seed = 0; seed < 50; ++seed) {
    auto lengths = RandomLengths(60, seed, 3000);
    std::vector<int64_t> ids(lengths.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
    const int64_t capacity = 1024;
    PackResult r = PackMicroBatches(ids, lengths, capacity);
    std::map<int64_t, std::vector<std::pair<int64_t, int64_t>>> covered;
    for (const MicroBatchPlan& mb : r.micro_batches) {
      EXPECT_LE(mb.tokens(), capacity);
      ASSERT_EQ(mb.cu_seqlens.size(), mb.pieces.size() + 1);
      for (size_t k = 0; k < mb.pieces.size(); ++k) {
        EXPECT_EQ(mb.cu_seqlens[k + 1] - mb.cu_seqlens[k], mb.pieces[k].length);
        covered[mb.pieces[k].id].push_back({mb.pieces[k].begin, mb.pieces[k].length});
      }
    }
    int64_t cut = 0;
    for (size_t i = 0; i < lengths.size(); ++i) {
      auto& parts = covered[static_cast<int64_t>(i)];
      std::sort(parts.begin(), parts.end());
      int64_t at = 0;
      for (auto [b, len] : parts) {
        EXPECT_EQ(b, at) << "sequence " << i;
        at += len;
      }
      EXPECT_EQ(at, lengths[i]) << "sequence " << i;
      cut += lengths[i] > capacity;
    }
    EXPECT_EQ(r.cut_sequences, cut);
  }
}

// Blend weights 1:3 with equal-length sequences: the greedy rule gives exactly one draw from the
// first dataset in every four, in a fixed pattern; each dataset walks its own permutation.
TEST(BlendedBatchSampler, FollowsTheWeightsExactlyAndResumes) {
  std::vector<int32_t> a(10, 5), b(30, 5);
  BlendedBatchSampler s({{1.0, a}, {3.0, b}}, 3, 20);  // 4 sequences per batch
  BlendCursor c = s.Start();
  std::vector<BlendedId> all;
  std::vector<BlendCursor> cursors;
  for (int step = 0; step < 25; ++step) {
    cursors.push_back(c);
    const auto batch = s.Next(c);
    ASSERT_EQ(batch.size(), 4u);
    int from_a = 0;
    for (const BlendedId& id : batch) from_a += id.dataset == 0;
    EXPECT_EQ(from_a, 1) << "step " << step;
    all.insert(all.end(), batch.begin(), batch.end());
  }
  // The first 10 draws from dataset 0 are a permutation of its 10 sequences.
  std::set<int64_t> first_epoch;
  for (const BlendedId& id : all)
    if (id.dataset == 0 && first_epoch.size() < 10) first_epoch.insert(id.sequence);
  EXPECT_EQ(first_epoch.size(), 10u);
  // Resuming from the cursor saved before step 7 reproduces steps 7..24.
  BlendedBatchSampler again({{1.0, a}, {3.0, b}}, 3, 20);
  BlendCursor r = cursors[7];
  for (int step = 7; step < 25; ++step) {
    const auto batch = again.Next(r);
    EXPECT_TRUE(std::equal(batch.begin(), batch.end(), all.begin() + 4 * step)) << step;
  }
}

TEST(ParseBlend, PairsOfWeightAndPrefix) {
  EXPECT_EQ(ParseBlend("data/a"), (std::vector<std::pair<double, std::string>>{{1.0, "data/a"}}));
  EXPECT_EQ(ParseBlend(" 0.3 x  0.7 y "),
            (std::vector<std::pair<double, std::string>>{{0.3, "x"}, {0.7, "y"}}));
  EXPECT_TRUE(testing::ThrowsWith([] { ParseBlend("0.3 x 0.7"); }, "pairs of a weight"));
  EXPECT_TRUE(testing::ThrowsWith([] { ParseBlend("0.3 x -1 y"); },
                                  "weight 1 ('-1') must be a positive number"));
  EXPECT_TRUE(testing::ThrowsWith([] { ParseBlend("abc x"); },
                                  "weight 0 ('abc') must be a positive number"));
}

}  // namespace
}  // namespace seqmesh
