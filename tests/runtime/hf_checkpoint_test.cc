// Hugging Face checkpoint directories: a model saved and loaded back is bit-identical (F32) and
// computes the same loss; config.json keys the model cannot honour are named errors; missing,
// extra and misshapen tensors are named errors; sharded checkpoints load.
#include "runtime/hf_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "runtime/json.h"
#include "runtime/layers.h"
#include "runtime/safetensors.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;

using testing::ThrowsWith;

class HfCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("seqmesh_hf_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    config_.vocab = 37;
    config_.hidden = 24;
    config_.layers = 2;
    config_.heads = 4;
    config_.kv_heads = 2;
    config_.ffn = 40;
    config_.rope_theta = 500000.0f;
    config_.norm_eps = 1e-6f;
    options_.max_tokens = 16;
  }
  void TearDown() override { fs::remove_all(dir_); }
  void WriteConfigJson(const std::string& text) {
    fs::create_directories(dir_);
    std::ofstream(dir_ + "/config.json") << text;
  }
  float Loss(Model& m) {
    std::vector<int32_t> tokens = {1, 5, 9, 2, 7, 3}, targets = {5, 9, 2, kIgnoreIndex, 3, 0},
                         cu = {0, 4, 6};
    return m.Forward({tokens.data(), targets.data(), cu.data(), 2, 6}, 5.0f);
  }

  std::string dir_;
  ModelConfig config_;
  ModelOptions options_;
};

TEST_F(HfCheckpointTest, SaveThenLoadIsBitIdentical) {
  for (bool tied : {false, true}) {
    config_.tie_embeddings = tied;
    Model a(config_, options_);
    a.InitRandom(7, 0.3f);
    SaveHfModel(a, dir_);
    const ModelConfig c = ReadHfConfig(dir_ + "/config.json");
    EXPECT_EQ(c.vocab, 37);
    EXPECT_EQ(c.kv_heads, 2);
    EXPECT_EQ(c.rope_theta, 500000.0f);
    EXPECT_EQ(c.norm_eps, 1e-6f);
    EXPECT_EQ(c.tie_embeddings, tied);
    Model b(c, options_);
    LoadHfWeights(b, dir_);
    for (size_t i = 0; i < a.params().size(); ++i)
      EXPECT_EQ(0, std::memcmp(a.params()[i].data(), b.params()[i].data(), a.params()[i].bytes()))
          << a.params()[i].name();
    EXPECT_EQ(Loss(a), Loss(b));
    EXPECT_EQ(SafetensorsFile::Open(dir_ + "/model.safetensors").Find("lm_head.weight") != nullptr,
              !tied);
  }
}

TEST_F(HfCheckpointTest, UnsupportedConfigKeysAreNamed) {
  const std::string base =
      R"("vocab_size":37,"hidden_size":24,"intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":4)";
  WriteConfigJson("{" + base + "}");
  EXPECT_EQ(ReadHfConfig(dir_ + "/config.json").kv_heads, 4);  // defaults to the heads
  WriteConfigJson("{" + base + R"(,"attention_bias":true})");
  EXPECT_TRUE(ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); },
                         "attention_bias = true is not supported"));
  WriteConfigJson("{" + base + R"(,"rope_scaling":{"rope_type":"llama3","factor":8.0}})");
  EXPECT_TRUE(ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); },
                         "rope_scaling is set; RoPE scaling is not supported yet"));
  WriteConfigJson("{" + base + R"(,"hidden_act":"gelu"})");
  EXPECT_TRUE(ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); },
                         "hidden_act \"gelu\" is not supported"));
  WriteConfigJson("{" + base + R"(,"num_key_value_heads":3})");
  EXPECT_TRUE(ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); },
                         "model.kv_heads (3) must divide model.heads (4)"));
  WriteConfigJson(R"({"hidden_size":24})");
  EXPECT_TRUE(
      ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); }, "missing key \"vocab_size\""));
}

TEST_F(HfCheckpointTest, MissingExtraAndMisshapenTensorsAreNamed) {
  Model a(config_, options_);
  a.InitRandom(1);
  fs::create_directories(dir_);
  std::vector<Tensor> params = a.params();
  // Missing: drop model.norm.weight.
  std::vector<Tensor> fewer;
  for (const Tensor& t : params)
    if (t.name() != "model.norm.weight") fewer.push_back(t);
  WriteSafetensors(dir_ + "/model.safetensors", fewer);
  EXPECT_TRUE(ThrowsWith([&] { LoadHfWeights(a, dir_); }, "has no tensor 'model.norm.weight'"));
  // Extra: a bias the model does not have.
  float bias[24] = {};
  std::vector<Tensor> more = params;
  more.emplace_back("model.layers.0.self_attn.q_proj.bias", DType::kF32, Shape{24}, bias);
  WriteSafetensors(dir_ + "/model.safetensors", more);
  EXPECT_TRUE(ThrowsWith([&] { LoadHfWeights(a, dir_); },
                         "has tensor 'model.layers.0.self_attn.q_proj.bias', which this model "
                         "does not have"));
  // Misshapen: the same bytes as [vocab*hidden] instead of [vocab, hidden].
  std::vector<Tensor> flat = params;
  flat[0] = Tensor(flat[0].name(), DType::kF32, Shape{flat[0].numel()}, flat[0].data());
  WriteSafetensors(dir_ + "/model.safetensors", flat);
  EXPECT_TRUE(ThrowsWith([&] { LoadHfWeights(a, dir_); },
                         "tensor 'model.embed_tokens.weight' has shape [888], expected [37, 24]"));
}

TEST_F(HfCheckpointTest, ShardedCheckpointLoads) {
  Model a(config_, options_), b(config_, options_);
  a.InitRandom(5, 0.2f);
  fs::create_directories(dir_);
  const std::vector<Tensor>& p = a.params();
  const size_t half = p.size() / 2;
  WriteSafetensors(dir_ + "/model-00001-of-00002.safetensors",
                   std::vector<Tensor>(p.begin(), p.begin() + half), /*as_bf16=*/true);
  WriteSafetensors(dir_ + "/model-00002-of-00002.safetensors",
                   std::vector<Tensor>(p.begin() + half, p.end()), /*as_bf16=*/true);
  Json map = Json::Object();
  for (size_t i = 0; i < p.size(); ++i)
    map.Set(p[i].name(), Json::String(i < half ? "model-00001-of-00002.safetensors"
                                               : "model-00002-of-00002.safetensors"));
  Json index = Json::Object();
  index.Set("metadata", Json::Object());
  index.Set("weight_map", std::move(map));
  std::ofstream(dir_ + "/model.safetensors.index.json") << index.Dump();
  LoadHfWeights(b, dir_);
  for (size_t i = 0; i < p.size(); ++i)
    for (int64_t k = 0; k < p[i].numel(); ++k)
      ASSERT_EQ(b.params()[i].f32()[k], Bf16ToFloat(FloatToBf16(p[i].f32()[k]))) << p[i].name();
}

}  // namespace
}  // namespace seqmesh
