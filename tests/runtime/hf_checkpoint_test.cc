// Hugging Face checkpoint directories: a model saved and loaded back is bit-identical (F32) and
// computes the same loss; config.json keys the model cannot honour are named errors; missing,
// extra and misshapen tensors are named errors; sharded checkpoints load. The faithful round trip:
// a Llama 3.2 config.json comes back member for member with its numbers' text, weights in the
// dtype read (bit for bit) unless export_dtype says otherwise, tokenizer files copied; rope types
// seqmesh does not implement are refused by name.
#include "runtime/hf_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <utility>
#include <vector>

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
  WriteConfigJson("{" + base + R"(,"rope_scaling":{"rope_type":"yarn","factor":8.0}})");
  EXPECT_TRUE(ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); },
                         "rope_scaling.rope_type \"yarn\" is not supported"));
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

// ---- The faithful round trip (issue 18, item 6) ----

// A Llama 3.2 config.json as transformers writes it (pretty-printed, sorted keys), shrunk to
// the test model's sizes, with an unknown key and the ids and fields seqmesh does not model.
const char* kLlama32Config = R"({
  "architectures": [
    "LlamaForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [
    128001,
    128008,
    128009
  ],
  "head_dim": 6,
  "hidden_act": "silu",
  "hidden_size": 24,
  "initializer_range": 0.02,
  "intermediate_size": 40,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "pad_token_id": null,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0",
  "unsloth_fixed": {"note": "an unknown key", "values": [1.50, 2e-3, -0.0]},
  "use_cache": true,
  "vocab_size": 37
})";

class HfRoundTripTest : public HfCheckpointTest {
 protected:
  std::string Src() const { return dir_ + "/src"; }
  std::string Out() const { return dir_ + "/out"; }
  // Src(): kLlama32Config and random weights stored as `dtype` ("BF16", "F16" or "F32").
  Model MakeSource(const std::string& dtype) {
    fs::create_directories(Src());
    std::ofstream(Src() + "/config.json") << kLlama32Config;
    const ModelConfig c = ReadHfConfig(Src() + "/config.json");
    Model m(c, options_);
    m.InitRandom(3, 0.5f);
    WriteSafetensors(Src() + "/model.safetensors", m.params(),
                     std::vector<std::string>(m.params().size(), dtype));
    Model loaded(c, options_);
    LoadHfWeights(loaded, Src());
    return loaded;
  }
  static std::string Text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static Json Parse(const std::string& path) { return Json::Parse(Text(path), path); }
  // Each member of `got` is the member of `want` of the same name, in the same place, with the
  // same text (numbers as written); `except` names members allowed to differ.
  static void ExpectSameMembers(const Json& got, const Json& want,
                                const std::set<std::string>& except = {}) {
    const auto& g = got.AsObject("got");
    const auto& w = want.AsObject("want");
    ASSERT_EQ(g.size(), w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      EXPECT_EQ(g[i].first, w[i].first);
      if (!except.count(w[i].first)) {
        EXPECT_EQ(g[i].second.Dump(), w[i].second.Dump()) << w[i].first;
      }
    }
  }
};

TEST_F(HfRoundTripTest, Llama32ConfigIsReadWithItsRopeScaling) {
  MakeSource("BF16");
  const ModelConfig c = ReadHfConfig(Src() + "/config.json");
  EXPECT_EQ(c.rope_scaling.type, RopeType::kLlama3);
  EXPECT_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_positions, 8192);
  EXPECT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_TRUE(c.tie_embeddings);
}

// Every member of config.json comes back as it was read: the ids, max_position_embeddings,
// rope_scaling, torch_dtype, the unknown key, and each number's text ("1e-05", "500000.0",
// "1.50"); the BF16 weights come back as the same bits.
TEST_F(HfRoundTripTest, ConfigAndBf16WeightsComeBackAsRead) {
  const Model m = MakeSource("BF16");
  const std::vector<std::string> files = SaveHfModel(m, Out());
  EXPECT_EQ(files, (std::vector<std::string>{"config.json", "model.safetensors"}));
  ExpectSameMembers(Parse(Out() + "/config.json"), Parse(Src() + "/config.json"));
  const std::string text = Text(Out() + "/config.json");
  for (const char* member :
       {"\"rms_norm_eps\": 1e-05", "\"rope_theta\": 500000.0", "\"factor\": 32.0",
        "\"values\": [\n      1.50,\n      2e-3", "\"max_position_embeddings\": 131072",
        "\"bos_token_id\": 128000", "\"pad_token_id\": null", "\"torch_dtype\": \"bfloat16\""})
    EXPECT_NE(text.find(member), std::string::npos) << member << " not in\n" << text;
  const SafetensorsFile a = SafetensorsFile::Open(Src() + "/model.safetensors");
  const SafetensorsFile b = SafetensorsFile::Open(Out() + "/model.safetensors");
  for (const Tensor& p : m.params()) {
    const SafetensorsEntry* x = a.Find(p.name());
    const SafetensorsEntry* y = b.Find(p.name());
    ASSERT_TRUE(x && y) << p.name();
    EXPECT_EQ(y->dtype, "BF16") << p.name();
    ASSERT_EQ(x->bytes, y->bytes) << p.name();
    EXPECT_EQ(0, std::memcmp(x->data, y->data, x->bytes)) << p.name();
  }
  // And again from what was written: a checkpoint of a checkpoint is the same directory.
  Model again(ReadHfConfig(Out() + "/config.json"), options_);
  LoadHfWeights(again, Out());
  SaveHfModel(again, dir_ + "/again");
  EXPECT_EQ(Text(dir_ + "/again/config.json"), text);
  EXPECT_EQ(Text(dir_ + "/again/model.safetensors"), Text(Out() + "/model.safetensors"));
}

// checkpoint.export_dtype: float32 writes F32 with the same values (bf16 widens exactly) and
// torch_dtype "float32", the rest of config.json untouched; bfloat16 from F32 weights rounds.
TEST_F(HfRoundTripTest, ExportDtypeOverridesTheDtypeRead) {
  const Model m = MakeSource("BF16");
  SaveHfModel(m, Out(), ExportDType::kFloat32);
  const Json src = Parse(Src() + "/config.json"), out = Parse(Out() + "/config.json");
  ExpectSameMembers(out, src, {"torch_dtype"});
  EXPECT_EQ(out.Find("torch_dtype")->AsString(""), "float32");
  const SafetensorsFile a = SafetensorsFile::Open(Src() + "/model.safetensors");
  const SafetensorsFile b = SafetensorsFile::Open(Out() + "/model.safetensors");
  for (const Tensor& p : m.params()) {
    const SafetensorsEntry* y = b.Find(p.name());
    ASSERT_TRUE(y);
    EXPECT_EQ(y->dtype, "F32");
    for (int64_t k = 0; k < p.numel(); ++k) {
      uint16_t h;
      float f;
      std::memcpy(&h, a.Find(p.name())->data + 2 * k, 2);
      std::memcpy(&f, y->data + 4 * k, 4);
      ASSERT_EQ(f, Bf16ToFloat(h)) << p.name() << "[" << k << "]";
    }
  }
  // Back to bfloat16 from the F32 directory: the original bits.
  Model f32(ReadHfConfig(Out() + "/config.json"), options_);
  LoadHfWeights(f32, Out());
  SaveHfModel(f32, dir_ + "/bf16", ExportDType::kBfloat16);
  EXPECT_EQ(Text(dir_ + "/bf16/model.safetensors"), Text(Src() + "/model.safetensors"));
  ExpectSameMembers(Parse(dir_ + "/bf16/config.json"), src);
}

TEST_F(HfRoundTripTest, F16AndF32WeightsKeepTheirDtype) {
  for (const char* dtype : {"F16", "F32"}) {
    const Model m = MakeSource(dtype);
    SaveHfModel(m, Out());
    EXPECT_EQ(Text(Out() + "/model.safetensors"), Text(Src() + "/model.safetensors")) << dtype;
    EXPECT_EQ(Parse(Out() + "/config.json").Find("torch_dtype")->AsString(""),
              std::string(dtype) == "F16" ? "float16" : "float32");
  }
}

// Fields the model changed are replaced in place; the others keep their text.
TEST_F(HfRoundTripTest, ChangedFieldsAreReplacedInPlace) {
  const Json src = Json::Parse(kLlama32Config);
  ModelConfig c = HfModelConfig(src, "");
  c.norm_eps = 1e-6f;
  c.rope_scaling = {};
  c.rope_theta = 10000.0f;
  const Json out = HfConfigJson(c, &src, "bfloat16");
  ExpectSameMembers(out, src, {"rms_norm_eps", "rope_scaling", "rope_theta"});
  EXPECT_EQ(out.Find("rms_norm_eps")->Dump(), "1e-06");
  EXPECT_EQ(out.Find("rope_theta")->Dump(), "10000.0");
  EXPECT_TRUE(out.Find("rope_scaling")->is_null());
  c.rope_scaling.type = RopeType::kLinear;
  c.rope_scaling.factor = 2.0;
  EXPECT_EQ(HfConfigJson(c, &src, "bfloat16").Find("rope_scaling")->Dump(),
            R"({"factor":2,"rope_type":"linear"})");
}

// A model of seqmesh's own gets a fresh config.json with floats as short as they read back.
TEST_F(HfRoundTripTest, FreshConfigWritesShortFloats) {
  Model m(config_, options_);  // norm_eps 1e-6f, rope_theta 5e5f
  SaveHfModel(m, Out());
  const std::string text = Text(Out() + "/config.json");
  EXPECT_NE(text.find("\"rms_norm_eps\": 1e-06,"), std::string::npos) << text;
  EXPECT_NE(text.find("\"rope_theta\": 500000.0,"), std::string::npos) << text;
  EXPECT_NE(text.find("\"torch_dtype\": \"float32\""), std::string::npos) << text;
}

// The tokenizer and generation files of the source are copied, byte for byte, and only those;
// they are held from the load, so a source directory removed since does not matter.
TEST_F(HfRoundTripTest, CompanionFilesAreCopied) {
  static const char kRawTokenizer[] = "{\"model\": {\"type\": \"BPE\"}}\0\xff";  // any bytes
  fs::create_directories(Src());
  const std::vector<std::pair<std::string, std::string>> companions = {
      {"generation_config.json", "{\"bos_token_id\": 128000, \"temperature\": 0.6}\n"},
      {"special_tokens_map.json", "{}"},
      {"tokenizer.json", std::string(kRawTokenizer, sizeof kRawTokenizer - 1)},
      {"tokenizer_config.json", "{\"chat_template\": \"{{ bos_token }}\"}"},
      {"tokenizer.model", ""},
      {"o200k.tiktoken", "IQ== 0\n"}};
  for (const auto& [name, bytes] : companions) std::ofstream(Src() + "/" + name) << bytes;
  std::ofstream(Src() + "/README.md") << "not a model file";
  std::ofstream(Src() + "/optimizer-rank-00000.safetensors") << "nor this";
  const Model m = MakeSource("BF16");
  fs::remove_all(Src());
  const std::vector<std::string> files = SaveHfModel(m, Out());
  EXPECT_EQ(files.size(), 2 + companions.size());
  for (const auto& [name, bytes] : companions) {
    EXPECT_EQ(Text(Out() + "/" + name), bytes) << name;
    EXPECT_NE(std::find(files.begin(), files.end(), name), files.end()) << name;
  }
  EXPECT_FALSE(fs::exists(Out() + "/README.md"));
  EXPECT_FALSE(fs::exists(Out() + "/optimizer-rank-00000.safetensors"));
  EXPECT_TRUE(HfCompanionFile("cl100k_base.tiktoken"));
  EXPECT_FALSE(HfCompanionFile(".tiktoken"));
  EXPECT_FALSE(HfCompanionFile("model.safetensors"));
}

// Other rope types are refused in one line naming the key, the value and what is supported.
TEST_F(HfRoundTripTest, UnsupportedRopeTypesAreNamed) {
  const std::string base =
      R"("vocab_size":37,"hidden_size":24,"intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":4)";
  for (const char* type : {"yarn", "dynamic", "longrope", "su"}) {
    WriteConfigJson("{" + base + R"(,"rope_scaling":{"rope_type":")" + type +
                    R"(","factor":4.0}})");
    EXPECT_TRUE(ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); },
                           std::string("rope_scaling.rope_type \"") + type +
                               "\" is not supported (seqmesh implements default, linear and "
                               "llama3)"));
  }
  // Configs older than transformers 4.43 say "type".
  WriteConfigJson("{" + base + R"(,"rope_scaling":{"type":"dynamic","factor":2.0}})");
  EXPECT_TRUE(ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); },
                         "rope_scaling.type \"dynamic\" is not supported"));
  WriteConfigJson("{" + base + R"(,"rope_scaling":{"type":"linear","factor":2.0}})");
  EXPECT_EQ(ReadHfConfig(dir_ + "/config.json").rope_scaling.type, RopeType::kLinear);
  WriteConfigJson("{" + base + R"(,"rope_scaling":{"rope_type":"llama3","factor":8.0}})");
  EXPECT_TRUE(
      ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); },
                 "rope_scaling.low_freq_factor is missing (rope_type \"llama3\" needs it)"));
  WriteConfigJson("{" + base + R"(,"rope_scaling":{"rope_type":"linear","factor":0.5}})");
  EXPECT_TRUE(
      ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); }, "rope_scaling.factor must be >= 1"));
  // transformers 5's rope_parameters, which carries rope_theta.
  WriteConfigJson("{" + base +
                  R"(,"rope_parameters":{"rope_type":"linear","factor":2.0,"rope_theta":1e6}})");
  const ModelConfig c = ReadHfConfig(dir_ + "/config.json");
  EXPECT_EQ(c.rope_scaling.type, RopeType::kLinear);
  EXPECT_EQ(c.rope_theta, 1e6f);
  WriteConfigJson("{" + base + R"(,"rope_parameters":{"rope_type":"yarn","factor":2.0}})");
  EXPECT_TRUE(ThrowsWith([&] { ReadHfConfig(dir_ + "/config.json"); },
                         "rope_parameters.rope_type \"yarn\" is not supported"));
}

TEST(Float16, RoundTripsEveryHalfAndRoundsHalfToEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToFloat(FloatToF16(f))));
      continue;
    }
    ASSERT_EQ(FloatToF16(f), h) << std::hex << h;
  }
  EXPECT_EQ(FloatToF16(1.0f + 0x1p-11f), 0x3c00);      // tie: to even (1.0)
  EXPECT_EQ(FloatToF16(1.0f + 3 * 0x1p-11f), 0x3c02);  // tie: to even (1 + 2^-9)
  EXPECT_EQ(FloatToF16(65519.0f), 0x7bff);             // just below the tie: 65504
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);             // tie past the largest half: infinity
  EXPECT_EQ(FloatToF16(0x1p-25f), 0x0000);             // tie at half the smallest subnormal
  EXPECT_EQ(FloatToF16(0x1.8p-25f), 0x0001);
  EXPECT_EQ(FloatToF16(-0.0f), 0x8000);
}

}  // namespace
}  // namespace seqmesh
