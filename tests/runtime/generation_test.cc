// Incremental decoding with the KV cache, the sampler and the generation loop
// (runtime/kv_cache.h, runtime/sampler.h, runtime/generation.h):
//   - the logits of every position decoded incrementally (a prefill, in one piece or several,
//     then one token per call) equal those of one full Forward over the whole sequence, with GQA
//     and several layers, tied and untied;
//   - greedy generation equals argmax of a full Forward recomputed at every step (no cache), and
//     stops at the stop id;
//   - top-p -> 0 and top-k = 1 are greedy; a seed gives the same samples twice; the nucleus
//     keeps exactly the ids it should and draws them in proportion;
//   - a cache that is full, or planned for another model, is an error naming it;
//   - a model without gradients (inference) gives the same bits in less memory.
// (The same greedy ids against an independent PyTorch reference: python/tests/test_generate.py.)
#include "runtime/generation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/layers.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using testing::RelError;
using testing::ThrowsWith;

ModelConfig GqaConfig(bool tied) {
  ModelConfig c;
  c.vocab = 61;
  c.hidden = 48;
  c.layers = 3;
  c.heads = 6;
  c.kv_heads = 2;  // GQA: 3 query heads per kv head
  c.ffn = 80;
  c.rope_theta = 10000.0f;
  c.tie_embeddings = tied;
  return c;
}

Model RandomModel(const ModelConfig& c, int64_t max_tokens, uint64_t seed) {
  ModelOptions o;
  o.max_tokens = max_tokens;
  Model m(c, o);
  // std 0.2 rather than the training init's 0.02: logits of order 1 that differ per position, so
  // a wrong position, mask or head mapping shows far above the tolerance.
  m.InitRandom(seed, 0.2f);
  return m;
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

// (T, vocab) logits of one Forward over `tokens` as one document.
std::vector<float> FullLogits(Model& m, const std::vector<int32_t>& tokens) {
  const int64_t t = static_cast<int64_t>(tokens.size());
  std::vector<int32_t> targets(t, kIgnoreIndex);
  targets[0] = tokens[0];  // one counted target: the normalizer needs none, the loss is unused
  const int32_t cu[2] = {0, static_cast<int32_t>(t)};
  std::vector<float> logits(t * m.config().vocab);
  m.Forward({tokens.data(), targets.data(), cu, 1, t}, 1.0f, logits.data());
  return logits;
}

struct DecodeCase {
  bool tied;
  std::vector<int64_t> prefill_pieces;  // the prompt in Decode calls of these sizes
};

void PrintTo(const DecodeCase& p, std::ostream* os) {
  *os << (p.tied ? "tied" : "untied") << ", prefill in pieces of";
  for (int64_t n : p.prefill_pieces) *os << " " << n;
}

class DecodeTest : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeTest, IncrementalLogitsEqualOneFullForward) {
  const DecodeCase& p = GetParam();
  const ModelConfig c = GqaConfig(p.tied);
  const int64_t total = 29;
  const int64_t prompt = std::accumulate(p.prefill_pieces.begin(), p.prefill_pieces.end(), 0L);
  const std::vector<int32_t> tokens = RandomTokens(total, c.vocab, 7);
  Model full = RandomModel(c, total, 11);
  const std::vector<float> want = FullLogits(full, tokens);

  Model inc =
      RandomModel(c, *std::max_element(p.prefill_pieces.begin(), p.prefill_pieces.end()), 11);
  KvCache cache(c, total);
  std::vector<float> got(total * c.vocab);
  int64_t pos = 0;
  for (int64_t piece : p.prefill_pieces) {
    inc.Decode(std::span<const int32_t>(tokens).subspan(pos, piece), cache,
               got.data() + pos * c.vocab, /*all_logits=*/true);
    pos += piece;
  }
  ASSERT_EQ(cache.length(), prompt);
  for (; pos < total; ++pos)
    inc.Decode(std::span<const int32_t>(tokens).subspan(pos, 1), cache, got.data() + pos * c.vocab);
  EXPECT_EQ(cache.length(), total);
  // Tolerance: both paths run the same fp32 kernels on the same weights; they differ only in how
  // the sums are split (GEMMs of 1..29 rows pick different tiles, and attention's query blocks
  // start at other rows), so each logit differs by reassociation error, a few ulp of the partial
  // sums through 3 layers (measured: 2e-6 of the logits' scale at most). A wrong position, mask or
  // kv head mapping moves logits by O(0.1) of their scale.
  for (int64_t t = 0; t < total; ++t) {
    EXPECT_LT(RelError(got.data() + t * c.vocab, want.data() + t * c.vocab, c.vocab), 2e-5)
        << "position " << t << (t < prompt ? " (prefill)" : " (decode)");
  }
}

INSTANTIATE_TEST_SUITE_P(Prefills, DecodeTest,
                         ::testing::Values(DecodeCase{false, {1}}, DecodeCase{false, {9}},
                                           DecodeCase{true, {9}}, DecodeCase{false, {4, 4, 1}},
                                           DecodeCase{true, {3, 5}}),
                         [](const ::testing::TestParamInfo<DecodeCase>& info) {
                           std::string name = info.param.tied ? "Tied" : "Untied";
                           for (int64_t n : info.param.prefill_pieces)
                             name += "_" + std::to_string(n);
                           return name;
                         });

TEST(DecodeTest, AFullCacheAndAnotherModelsCacheAreRefused) {
  const ModelConfig c = GqaConfig(false);
  Model m = RandomModel(c, 4, 3);
  std::vector<float> logits(4 * c.vocab);
  const std::vector<int32_t> t = {1, 2, 3, 4};
  KvCache small(c, 3);
  EXPECT_TRUE(ThrowsWith([&] { m.Decode(t, small, logits.data()); },
                         "the KV cache holds 3 positions; 0 are filled and 4 more do not fit"));
  ModelConfig other = c;
  other.layers = 2;
  KvCache wrong(other, 8);
  EXPECT_TRUE(ThrowsWith([&] { m.Decode(t, wrong, logits.data()); },
                         "the KV cache was planned for 2 layers"));
  KvCache ok(c, 8);
  EXPECT_TRUE(ThrowsWith([&] { m.Decode(RandomTokens(5, c.vocab, 1), ok, logits.data()); },
                         "Decode of 5 tokens, more than the model's capacity max_tokens = 4"));
}

TEST(DecodeTest, AModelWithoutGradientsGivesTheSameBitsInLessMemory) {
  const ModelConfig c = GqaConfig(false);
  const std::vector<int32_t> tokens = RandomTokens(12, c.vocab, 2);
  Model trainable = RandomModel(c, 12, 8);
  ModelOptions o;
  o.max_tokens = 12;
  o.gradients = false;
  Model inference(c, o);
  inference.InitRandom(8, 0.2f);
  EXPECT_TRUE(inference.grads().empty());
  EXPECT_LT(inference.activation_bytes(), trainable.activation_bytes() / 2);
  // The same kernels on the same shapes: bitwise the same logits, by Forward and by Decode.
  EXPECT_EQ(FullLogits(inference, tokens), FullLogits(trainable, tokens));
  KvCache a(c, 12), b(c, 12);
  std::vector<float> la(12 * c.vocab), lb(12 * c.vocab);
  inference.Decode(tokens, a, la.data(), true);
  trainable.Decode(tokens, b, lb.data(), true);
  EXPECT_EQ(la, lb);
  EXPECT_TRUE(
      ThrowsWith([&] { inference.Backward(); }, "Backward() on a model built for inference"));
}

// Greedy generation recomputed the slow way: a full Forward over prompt + ids at every step.
std::vector<int32_t> NaiveGreedy(Model& m, std::vector<int32_t> seq, int64_t new_tokens,
                                 int32_t stop) {
  std::vector<int32_t> out;
  const int64_t v = m.config().vocab;
  while (static_cast<int64_t>(out.size()) < new_tokens) {
    const std::vector<float> logits = FullLogits(m, seq);
    const int64_t last = static_cast<int64_t>(seq.size()) - 1;
    const int32_t next = Greedy(std::span<const float>(logits.data() + last * v, v));
    out.push_back(next);
    seq.push_back(next);
    if (next == stop) break;
  }
  return out;
}

TEST(GenerateTest, GreedyEqualsArgmaxOfAFullForwardAtEveryStep) {
  const ModelConfig c = GqaConfig(false);
  const std::vector<int32_t> prompt = RandomTokens(6, c.vocab, 5);
  Model naive = RandomModel(c, 64, 21);
  const std::vector<int32_t> want = NaiveGreedy(naive, prompt, 20, -1);
  // max_tokens 4 < the prompt: the prefill runs in two pieces.
  Model m = RandomModel(c, 4, 21);
  GenerationOptions o;
  o.max_new_tokens = 20;
  const Generation g = Generate(m, prompt, o);
  EXPECT_EQ(g.ids, want);
  EXPECT_EQ(g.stop, StopReason::kMaxNewTokens);

  // Stopping at a stop id: the first id greedy produces again (so it appears mid-sequence).
  o.stop_id = want[3];
  const auto first = std::find(want.begin(), want.end(), o.stop_id);
  const std::vector<int32_t> until(want.begin(), first + 1);
  const Generation s = Generate(m, prompt, o);
  EXPECT_EQ(s.ids, until);
  EXPECT_EQ(s.stop, StopReason::kStopId);
}

TEST(GenerateTest, EmptyPromptAndZeroNewTokensAreRefused) {
  const ModelConfig c = GqaConfig(false);
  Model m = RandomModel(c, 4, 1);
  GenerationOptions o;
  EXPECT_TRUE(ThrowsWith([&] { Generate(m, {}, o); }, "the prompt is empty"));
  o.max_new_tokens = 0;
  const std::vector<int32_t> p = {1};
  EXPECT_TRUE(ThrowsWith([&] { Generate(m, p, o); }, "max_new_tokens must be >= 1"));
}

TEST(SamplerTest, TopPTowardZeroAndTopKOneAreGreedy) {
  for (uint32_t row = 0; row < 200; ++row) {
    const std::vector<float> logits = testing::RandomVector(257, row, 3.0f);
    const int32_t greedy = Greedy(logits);
    SamplingOptions p;
    p.temperature = 1.3f;
    p.top_p = 1e-6f;
    p.seed = row;
    EXPECT_EQ(Sampler(p).Next(logits), greedy) << "row " << row;
    SamplingOptions k;
    k.temperature = 0.7f;
    k.top_k = 1;
    k.seed = row;
    EXPECT_EQ(Sampler(k).Next(logits), greedy) << "row " << row;
  }
}

TEST(SamplerTest, TheSameSeedGivesTheSameSamples) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.top_p = 0.9f;
  o.top_k = 40;
  o.seed = 1234;
  auto draw = [&](SamplingOptions opt) {
    Sampler s(opt);
    std::vector<int32_t> ids;
    for (uint32_t i = 0; i < 300; ++i) ids.push_back(s.Next(testing::RandomVector(100, i)));
    return ids;
  };
  const std::vector<int32_t> a = draw(o), b = draw(o);
  EXPECT_EQ(a, b);
  o.seed = 1235;
  EXPECT_NE(draw(o), a);
  // Sampling, not greedy: some draws differ from the argmax.
  int not_greedy = 0;
  for (uint32_t i = 0; i < 300; ++i) not_greedy += a[i] != Greedy(testing::RandomVector(100, i));
  EXPECT_GT(not_greedy, 30);
}

TEST(SamplerTest, TheNucleusKeepsTheIdsThatReachTopPAndDrawsThemInProportion) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (ids 2, 0, 3, 1). top_p 0.75: {2, 0} reach only 0.8 >= 0.75
  // with both, so exactly ids 2 and 0 are drawn, in proportion 5 : 3.
  const std::vector<float> logits = {std::log(0.3f), std::log(0.05f), std::log(0.5f),
                                     std::log(0.15f)};
  SamplingOptions o;
  o.temperature = 1.0f;
  o.top_p = 0.75f;
  o.seed = 99;
  Sampler s(o);
  std::vector<int> counts(4, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++counts[s.Next(logits)];
  EXPECT_EQ(counts[1] + counts[3], 0);
  // 0.625 +- 4 standard deviations of a binomial share (sqrt(p (1-p) / n) = 0.0024).
  EXPECT_NEAR(static_cast<double>(counts[2]) / n, 0.625, 0.01);
  // top_k 3 without top_p: ids 2, 0, 3 in proportion 0.5 : 0.3 : 0.15 of 0.95.
  SamplingOptions k;
  k.temperature = 1.0f;
  k.top_k = 3;
  k.seed = 5;
  Sampler sk(k);
  std::fill(counts.begin(), counts.end(), 0);
  for (int i = 0; i < n; ++i) ++counts[sk.Next(logits)];
  EXPECT_EQ(counts[1], 0);
  EXPECT_NEAR(static_cast<double>(counts[3]) / n, 0.15 / 0.95, 0.01);
}

TEST(SamplerTest, BadOptionsNameTheField) {
  SamplingOptions o;
  o.temperature = -1;
  EXPECT_TRUE(ThrowsWith([&] { Sampler s(o); }, "temperature must be >= 0"));
  o.temperature = 1;
  o.top_p = 0;
  EXPECT_TRUE(ThrowsWith([&] { Sampler s(o); }, "top_p must be in (0, 1]"));
  o.top_p = 1;
  o.top_k = -2;
  EXPECT_TRUE(ThrowsWith([&] { Sampler s(o); }, "top_k must be >= 0"));
}

}  // namespace
}  // namespace seqmesh
