// Tests of the fixture reader: the committed fixtures load and are internally consistent (shapes
// follow the config, the batch follows the packing rules, the stored loss follows from the stored
// logits), and malformed files fail with a message naming the problem.
#include "tests/reference/fixture.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#ifndef SEQMESH_FIXTURE_DIR
#define SEQMESH_FIXTURE_DIR "tests/reference/fixtures"
#endif

namespace seqmesh::testing {
namespace {

// gtest-only (no gmock): passes when `text` contains `needle`, printing `text` otherwise.
::testing::AssertionResult Contains(const std::string& text, const std::string& needle) {
  if (text.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << needle << "'";
}

std::string FixturePath(const std::string& file) {
  return std::string(SEQMESH_FIXTURE_DIR) + "/" + file;
}

// ---------------------------------------------------------------------------------------------
// The committed model fixtures.

class ModelFixtureTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { fx_ = std::make_unique<Fixture>(Fixture::Load(FixturePath(GetParam()))); }
  const Fixture& fx() const { return *fx_; }
  std::unique_ptr<Fixture> fx_;
};

TEST_P(ModelFixtureTest, BatchFollowsPackingRules) {
  const Tensor& tokens = fx().Get("batch.tokens");
  const Tensor& targets = fx().Get("batch.targets");
  const Tensor& cu = fx().Get("batch.cu_seqlens");
  ASSERT_EQ(tokens.shape().ndim(), 1);
  const int64_t T = tokens.dim(0);
  const int V = fx().ScalarInt("config.vocab");
  CheckShape(targets, {T});
  ASSERT_EQ(cu.shape().ndim(), 1);
  ASSERT_GE(cu.dim(0), 2);
  const int32_t* c = cu.i32();
  const int64_t docs = cu.dim(0) - 1;
  EXPECT_EQ(c[0], 0);
  EXPECT_EQ(c[docs], T) << "cu_seqlens must end at T";
  for (int64_t d = 0; d < docs; ++d) EXPECT_LE(c[d], c[d + 1]);

  int counted = 0;
  for (int64_t d = 0; d < docs; ++d) {
    for (int32_t i = c[d]; i < c[d + 1]; ++i) {
      EXPECT_GE(tokens.i32()[i], 0);
      EXPECT_LT(tokens.i32()[i], V);
      int32_t t = targets.i32()[i];
      if (i == c[d + 1] - 1) {
        EXPECT_EQ(t, -100) << "the last token of document " << d << " has no target";
      } else if (t != -100) {
        EXPECT_EQ(t, tokens.i32()[i + 1]) << "target " << i << " is not the next token";
      }
      counted += t != -100;
    }
  }
  EXPECT_EQ(fx().Scalar("batch.normalizer"), static_cast<float>(counted));
}

TEST_P(ModelFixtureTest, ParametersMatchConfig) {
  const int64_t V = fx().ScalarInt("config.vocab"), H = fx().ScalarInt("config.hidden");
  const int64_t L = fx().ScalarInt("config.layers"), heads = fx().ScalarInt("config.heads");
  const int64_t kv = fx().ScalarInt("config.kv_heads"), F = fx().ScalarInt("config.ffn");
  const bool tied = fx().ScalarInt("config.tie_embeddings") != 0;
  const int64_t hd = H / heads;
  ASSERT_EQ(H % heads, 0);
  ASSERT_EQ(heads % kv, 0);

  std::vector<std::string> params = fx().Names("param.");
  EXPECT_EQ(params.size(), static_cast<size_t>(2 + 9 * L + (tied ? 0 : 1)));
  EXPECT_EQ(fx().Has("param.lm_head.weight"), !tied);

  CheckShape(fx().Get("param.model.embed_tokens.weight"), {V, H});
  CheckShape(fx().Get("param.model.norm.weight"), {H});
  if (!tied) CheckShape(fx().Get("param.lm_head.weight"), {V, H});
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "param.model.layers." + std::to_string(l) + ".";
    CheckShape(fx().Get(p + "input_layernorm.weight"), {H});
    CheckShape(fx().Get(p + "self_attn.q_proj.weight"), {heads * hd, H});
    CheckShape(fx().Get(p + "self_attn.k_proj.weight"), {kv * hd, H});
    CheckShape(fx().Get(p + "self_attn.v_proj.weight"), {kv * hd, H});
    CheckShape(fx().Get(p + "self_attn.o_proj.weight"), {H, heads * hd});
    CheckShape(fx().Get(p + "post_attention_layernorm.weight"), {H});
    CheckShape(fx().Get(p + "mlp.gate_proj.weight"), {F, H});
    CheckShape(fx().Get(p + "mlp.up_proj.weight"), {F, H});
    CheckShape(fx().Get(p + "mlp.down_proj.weight"), {H, F});
  }
  // Every parameter has a gradient and a final value of the same shape, in the same order.
  EXPECT_EQ(fx().Names("grad.").size(), params.size());
  EXPECT_EQ(fx().Names("final.").size(), params.size());
  for (const std::string& name : params) {
    const std::string hf = name.substr(std::strlen("param."));
    EXPECT_TRUE(fx().Get("grad." + hf).shape() == fx().Get(name).shape()) << hf;
    EXPECT_TRUE(fx().Get("final." + hf).shape() == fx().Get(name).shape()) << hf;
  }
}

// loss = sum of cross-entropies over non-ignored targets / normalizer, from the stored logits.
TEST_P(ModelFixtureTest, LossFollowsFromLogits) {
  const int64_t T = fx().Get("batch.tokens").dim(0);
  const int64_t V = fx().ScalarInt("config.vocab");
  const Tensor& logits = fx().Get("logits");
  CheckShape(logits, {T, V});
  const int32_t* targets = fx().Get("batch.targets").i32();
  double sum = 0;
  for (int64_t i = 0; i < T; ++i) {
    if (targets[i] == -100) continue;
    const float* row = logits.f32() + i * V;
    double mx = row[0];
    for (int64_t j = 1; j < V; ++j) mx = std::max(mx, static_cast<double>(row[j]));
    double z = 0;
    for (int64_t j = 0; j < V; ++j) z += std::exp(row[j] - mx);
    sum += mx + std::log(z) - row[targets[i]];
  }
  const double loss = sum / fx().Scalar("batch.normalizer");
  EXPECT_NEAR(loss, fx().Scalar("loss"), 1e-5 * std::fabs(loss));
  EXPECT_EQ(fx().Get("train.losses").f32()[0], fx().Scalar("loss"));
}

// The recorded learning rates follow the schedule, and clipping was active on some step.
TEST_P(ModelFixtureTest, TrainRecordsFollowSchedule) {
  const int total = fx().ScalarInt("optim.total_steps"), warmup = fx().ScalarInt("optim.warmup");
  const double max_lr = fx().Scalar("optim.max_lr"), min_lr = fx().Scalar("optim.min_lr");
  for (const char* name : {"train.losses", "train.grad_norms", "train.lrs"})
    CheckShape(fx().Get(name), {total});
  const float* lrs = fx().Get("train.lrs").f32();
  for (int k = 0; k < total; ++k) {
    double lr;
    if (k < warmup) {
      lr = max_lr * (k + 1) / warmup;
    } else {
      double p = std::min(1.0, double(k - warmup) / std::max(1, total - warmup));
      lr = min_lr + 0.5 * (max_lr - min_lr) * (1 + std::cos(std::numbers::pi * p));
    }
    EXPECT_NEAR(lrs[k], lr, 1e-6 * lr) << "step " << k;
  }
  const float* norms = fx().Get("train.grad_norms").f32();
  bool clipped = false;
  for (int k = 0; k < total; ++k) clipped |= norms[k] > fx().Scalar("optim.clip");
  EXPECT_TRUE(clipped) << "no step exercises gradient clipping";
  const float* losses = fx().Get("train.losses").f32();
  EXPECT_LT(losses[total - 1], losses[0]) << "training on one batch should lower its loss";
}

// The generator once stored references to tensors that the optimizer then updated in place, so
// `param.*` held the final weights. Five AdamW steps with non-zero gradients move every
// parameter, so each `param.<name>` must differ from `final.<name>`, and no gradient may be all
// zero (that would make the gradient comparisons in model_reference_test vacuous).
TEST_P(ModelFixtureTest, InitialParametersDifferFromFinalAndGradientsAreNonzero) {
  const std::vector<std::string> params = fx().Names("param.");
  ASSERT_FALSE(params.empty());
  for (const std::string& name : params) {
    const std::string hf = name.substr(std::strlen("param."));
    const Tensor& init = fx().Get(name);
    const Tensor& final_value = fx().Get("final." + hf);
    ASSERT_TRUE(init.shape() == final_value.shape()) << hf;
    int64_t moved = 0;
    for (int64_t i = 0; i < init.numel(); ++i) moved += init.f32()[i] != final_value.f32()[i];
    EXPECT_GT(moved, 0) << "param." << hf << " equals final." << hf;
  }
  const std::vector<std::string> grads = fx().Names("grad.");
  EXPECT_EQ(grads.size(), params.size());
  for (const std::string& name : grads) {
    const Tensor& g = fx().Get(name);
    int64_t nonzero = 0;
    for (int64_t i = 0; i < g.numel(); ++i) nonzero += g.f32()[i] != 0.0f;
    EXPECT_GT(nonzero, 0) << name << " is all zero";
  }
}

INSTANTIATE_TEST_SUITE_P(Committed, ModelFixtureTest,
                         ::testing::Values("gqa_untied.bin", "mha_tied.bin", "gqa_tied_theta.bin"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string n = info.param;
                           return n.substr(0, n.find('.'));
                         });

// The attention fixture: shapes follow its config, and `out` and `lse` follow from q, k, v by a
// plain causal softmax per document (GQA: query head h reads kv head h / (heads / kv_heads)).
TEST(AttentionFixture, OutputsFollowFromInputs) {
  Fixture fx = Fixture::Load(FixturePath("attention.bin"));
  const int64_t heads = fx.ScalarInt("config.heads"), kv = fx.ScalarInt("config.kv_heads");
  const int64_t hd = fx.ScalarInt("config.head_dim");
  const float scale = fx.Scalar("config.scale");
  EXPECT_FLOAT_EQ(scale, 1.0f / std::sqrt(static_cast<float>(hd)));
  const Tensor& cu = fx.Get("cu_seqlens");
  const int64_t docs = cu.dim(0) - 1;
  const int64_t T = cu.i32()[docs];
  EXPECT_EQ(cu.i32()[0], 0);
  for (const char* name : {"q", "dout", "out", "dq"}) CheckShape(fx.Get(name), {T, heads * hd});
  for (const char* name : {"k", "v", "dk", "dv"}) CheckShape(fx.Get(name), {T, kv * hd});
  CheckShape(fx.Get("lse"), {heads, T});

  const float *q = fx.Get("q").f32(), *k = fx.Get("k").f32(), *v = fx.Get("v").f32();
  const float *out = fx.Get("out").f32(), *lse = fx.Get("lse").f32();
  double max_lse_err = 0, max_out_err = 0;
  std::vector<double> s, o(hd);
  for (int64_t d = 0; d < docs; ++d) {
    const int64_t b = cu.i32()[d], e = cu.i32()[d + 1];
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / (heads / kv);
      for (int64_t i = b; i < e; ++i) {
        s.assign(i - b + 1, 0.0);
        double mx = -INFINITY;
        for (int64_t j = b; j <= i; ++j) {
          double dot = 0;
          for (int64_t x = 0; x < hd; ++x)
            dot += double(q[(i * heads + h) * hd + x]) * k[(j * kv + g) * hd + x];
          s[j - b] = dot * scale;
          mx = std::max(mx, s[j - b]);
        }
        double z = 0;
        for (double& x : s) z += (x = std::exp(x - mx));
        max_lse_err = std::max(max_lse_err, std::fabs(mx + std::log(z) - lse[h * T + i]));
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = b; j <= i; ++j)
          for (int64_t x = 0; x < hd; ++x) o[x] += s[j - b] / z * v[(j * kv + g) * hd + x];
        for (int64_t x = 0; x < hd; ++x)
          max_out_err = std::max(max_out_err, std::fabs(o[x] - out[(i * heads + h) * hd + x]));
      }
    }
  }
  EXPECT_LT(max_lse_err, 1e-5);
  EXPECT_LT(max_out_err, 1e-5);
}

// ---------------------------------------------------------------------------------------------
// Hand-built files: the round trip and every malformed case.

// Serializes entries in the version-1 layout; `dtype`, `version` and `magic` may be set to
// invalid values to build malformed files.
struct RawEntry {
  std::string name;
  uint32_t dtype;  // 0 f32, 1 i32
  std::vector<int64_t> dims;
  std::vector<uint32_t> words;  // raw 4-byte data
};

std::string Serialize(const std::vector<RawEntry>& entries, uint32_t version = 1,
                      const char* magic = "SMFX") {
  std::string out(magic, 4);
  auto u32 = [&out](uint32_t x) { out.append(reinterpret_cast<const char*>(&x), 4); };
  u32(version);
  u32(static_cast<uint32_t>(entries.size()));
  for (const RawEntry& e : entries) {
    u32(static_cast<uint32_t>(e.name.size()));
    out += e.name;
    u32(e.dtype);
    u32(static_cast<uint32_t>(e.dims.size()));
    for (int64_t d : e.dims) out.append(reinterpret_cast<const char*>(&d), 8);
    out.append(reinterpret_cast<const char*>(e.words.data()), e.words.size() * 4);
  }
  return out;
}

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

class MalformedFixtureTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& bytes) {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::filesystem::path p = std::filesystem::path(::testing::TempDir()) /
                              (std::string("seqmesh_fixture_") + info->name() + ".bin");
    std::ofstream(p, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    paths_.push_back(p);
    return p.string();
  }
  void TearDown() override {
    for (const auto& p : paths_) std::filesystem::remove(p);
  }
  // Loads `path`, expecting a seqmesh::Error whose message holds `needle` and the file's path.
  void ExpectLoadError(const std::string& path, const std::string& needle) {
    try {
      Fixture::Load(path);
      ADD_FAILURE() << "loading " << path << " should have failed with '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_TRUE(Contains(e.what(), needle));
      EXPECT_TRUE(Contains(e.what(), path));
    }
  }
  static std::vector<RawEntry> Valid() {
    return {{"config.layers", 1, {}, {3}},
            {"w",
             0,
             {2, 3},
             {FloatBits(1), FloatBits(2), FloatBits(3), FloatBits(4), FloatBits(5), FloatBits(6)}},
            {"pi", 0, {}, {FloatBits(3.5f)}}};
  }
  std::vector<std::filesystem::path> paths_;
};

TEST_F(MalformedFixtureTest, ValidFileRoundTrips) {
  Fixture fx = Fixture::Load(Write(Serialize(Valid())));
  EXPECT_EQ(fx.Names(""), (std::vector<std::string>{"config.layers", "w", "pi"}));
  EXPECT_EQ(fx.Names("config."), (std::vector<std::string>{"config.layers"}));
  EXPECT_EQ(fx.ScalarInt("config.layers"), 3);
  EXPECT_EQ(fx.Scalar("config.layers"), 3.0f);
  EXPECT_EQ(fx.Scalar("pi"), 3.5f);
  const Tensor& w = fx.Get("w");
  EXPECT_EQ(w.name(), "w");
  EXPECT_EQ(w.dtype(), DType::kF32);
  CheckShape(w, {2, 3});
  EXPECT_EQ(w.f32()[5], 6.0f);
  EXPECT_EQ(fx.Get("config.layers").dtype(), DType::kI32);
  EXPECT_TRUE(fx.Get("pi").shape() == Shape());
  // Views stay valid after the Fixture moves.
  Fixture moved = std::move(fx);
  EXPECT_EQ(moved.Get("w").f32()[0], 1.0f);
}

TEST_F(MalformedFixtureTest, MissingEntryIsNamed) {
  std::string path = Write(Serialize(Valid()));
  Fixture fx = Fixture::Load(path);
  EXPECT_FALSE(fx.Has("nope"));
  try {
    fx.Get("nope");
    ADD_FAILURE() << "Get of a missing entry should throw";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "no entry 'nope'"));
    EXPECT_TRUE(Contains(e.what(), path));
  }
  EXPECT_THROW(fx.Scalar("w"), Error) << "a (2, 3) tensor is not a scalar";
  EXPECT_THROW(fx.ScalarInt("pi"), Error) << "3.5 is not an integer";
}

TEST_F(MalformedFixtureTest, MissingFile) {
  ExpectLoadError(::testing::TempDir() + "/seqmesh_no_such_fixture.bin", "cannot open");
}

TEST_F(MalformedFixtureTest, WrongMagic) {
  ExpectLoadError(Write(Serialize(Valid(), 1, "GGUF")), "bad magic 'GGUF'");
}

TEST_F(MalformedFixtureTest, UnsupportedVersion) {
  ExpectLoadError(Write(Serialize(Valid(), 2)), "unsupported version 2");
}

TEST_F(MalformedFixtureTest, TruncatedInData) {
  std::string bytes = Serialize(Valid());
  // The last entry, "pi", takes 4 + 2 + 4 + 4 + 4 = 18 bytes; "w"'s 24 data bytes precede it.
  // Keep 14 of them: the cut falls inside the fourth float.
  const size_t w_data = bytes.size() - 18 - 24;
  bytes.resize(w_data + 14);
  ExpectLoadError(Write(bytes), "truncated: entry 1 'w''s data needs 24 bytes");
}

TEST_F(MalformedFixtureTest, TruncatedHeader) {
  std::string bytes = Serialize(Valid());
  ExpectLoadError(Write(bytes.substr(0, 10)),
                  "truncated: the entry count needs 4 bytes at offset 8");
}

TEST_F(MalformedFixtureTest, UnknownDtype) {
  std::vector<RawEntry> entries = Valid();
  entries[1].dtype = 7;
  ExpectLoadError(Write(Serialize(entries)), "entry 1 'w' has unknown dtype 7");
}

TEST_F(MalformedFixtureTest, DuplicateName) {
  std::vector<RawEntry> entries = Valid();
  entries[2].name = "w";
  entries[2].dims = {2, 3};
  entries[2].words = entries[1].words;
  ExpectLoadError(Write(Serialize(entries)), "duplicate entry name 'w'");
}

TEST_F(MalformedFixtureTest, TooManyDimensions) {
  std::vector<RawEntry> entries = Valid();
  entries[1].dims = {1, 1, 2, 3, 1};
  ExpectLoadError(Write(Serialize(entries)), "entry 1 'w' has 5 dimensions");
}

TEST_F(MalformedFixtureTest, ImpossibleShape) {
  std::vector<RawEntry> entries = Valid();
  entries[1].dims = {int64_t{1} << 40, int64_t{1} << 40};
  ExpectLoadError(Write(Serialize(entries)), "declares more elements than the whole file");
}

TEST_F(MalformedFixtureTest, TrailingBytes) {
  ExpectLoadError(Write(Serialize(Valid()) + "xyz"), "3 trailing bytes");
}

}  // namespace
}  // namespace seqmesh::testing
