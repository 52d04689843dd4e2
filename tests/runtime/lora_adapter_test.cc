// runtime/lora_adapter on crafted files: small integer weights, so W + (alpha / r) B A is exact
// in BF16 and F32 and the merged model must equal it bit for bit; every other tensor, the
// metadata and the other files copied unchanged; a sharded base; PEFT's names; and each adapter
// that does not fit refused naming the tensor or the field.
#include "runtime/lora_adapter.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/dtype.h"
#include "runtime/json.h"
#include "runtime/safetensors.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;
using testing::ThrowsWith;

struct Spec {
  std::string name, dtype;
  int64_t rows, cols;
  std::vector<float> values;
};

void Write(const std::string& path, const std::vector<Spec>& tensors) {
  std::vector<SafetensorsTensorSpec> specs;
  for (const Spec& t : tensors) specs.push_back({t.name, t.dtype, {t.rows, t.cols}});
  SafetensorsWriter w(path, specs, {{"origin", "test"}});
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Spec& t = tensors[i];
    if (t.dtype == "BF16") {
      std::vector<uint16_t> h;
      for (float v : t.values) h.push_back(FloatToBf16(v));
      w.Write(i, 0, h.data(), h.size() * 2);
    } else {
      w.Write(i, 0, t.values.data(), t.values.size() * 4);
    }
  }
  w.Commit();
}

std::vector<float> Ints(int64_t n, int seed, int range) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i)
    v[i] = static_cast<float>((i * 7 + seed * 3) % (2 * range + 1) - range);
  return v;
}

std::vector<float> Read(const std::string& path, const std::string& name, std::string* dtype) {
  const SafetensorsFile f = SafetensorsFile::Open(path);
  const SafetensorsEntry* e = f.Find(name);
  EXPECT_NE(e, nullptr) << name;
  if (!e) return {};
  *dtype = e->dtype;
  std::vector<float> out(e->shape[0] * e->shape[1]);
  f.ReadInto(name, Tensor(name, DType::kF32, Shape{e->shape[0], e->shape[1]}, out.data()));
  return out;
}

std::string Text(const fs::path& p) {
  std::stringstream ss;
  ss << std::ifstream(p, std::ios::binary).rdbuf();
  return ss.str();
}

class LoraAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("seqmesh_lora_" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "base");
    std::ofstream(root_ / "base" / "config.json") << R"({"model_type": "llama", "x": 1e-06})";
    std::ofstream(root_ / "base" / "tokenizer.json") << R"({"model": {}})";
  }
  void TearDown() override { fs::remove_all(root_); }

  // q_proj (4 x 3, BF16, adapted), up_proj (5 x 3, F32, adapted), embed (6 x 3, BF16, not).
  std::vector<Spec> Base() {
    return {{"model.layers.0.self_attn.q_proj.weight", "BF16", 4, 3, Ints(12, 1, 3)},
            {"model.layers.0.mlp.up_proj.weight", "F32", 5, 3, Ints(15, 2, 3)},
            {"model.embed_tokens.weight", "BF16", 6, 3, Ints(18, 3, 3)}};
  }
  // r = 2, alpha = 4: scaling 2.
  void WriteAdapter(const std::string& config_extra = "", bool extra_tensor = false) {
    fs::create_directories(root_ / "adapter");
    LoraConfig c;
    c.rank = 2;
    c.alpha = 4;
    c.targets = {"q_proj", "up_proj"};
    c.base_model = (root_ / "base").string();
    WriteAdapterConfig((root_ / "adapter").string(), c);
    if (!config_extra.empty()) {  // replaces the fields `config_extra` names
      const Json old = Json::Parse(Text(root_ / "adapter" / "adapter_config.json"));
      const Json extra = Json::Parse("{" + config_extra + "}");
      Json j = Json::Object();
      for (const auto& [key, value] : old.AsObject("config"))
        if (!extra.Find(key)) j.Set(key, value);
      for (const auto& [key, value] : extra.AsObject("extra")) j.Set(key, value);
      std::ofstream(root_ / "adapter" / "adapter_config.json") << j.Dump();
    }
    std::vector<Spec> a = {
        {PeftTensorName("model.layers.0.self_attn.q_proj.weight", 'A'), "F32", 2, 3, Ints(6, 4, 2)},
        {PeftTensorName("model.layers.0.self_attn.q_proj.weight", 'B'), "F32", 4, 2, Ints(8, 5, 2)},
        {PeftTensorName("model.layers.0.mlp.up_proj.weight", 'A'), "F32", 2, 3, Ints(6, 6, 2)},
        {PeftTensorName("model.layers.0.mlp.up_proj.weight", 'B'), "F32", 5, 2, Ints(10, 7, 2)}};
    if (extra_tensor)
      a.push_back(
          {PeftTensorName("model.layers.9.mlp.up_proj.weight", 'A'), "F32", 2, 3, Ints(6, 8, 2)});
    Write((root_ / "adapter" / "adapter_model.safetensors").string(), a);
  }
  // W + 2 B A, by hand.
  static std::vector<float> Merged(const std::vector<float>& w, const std::vector<float>& a,
                                   const std::vector<float>& b, int64_t rows, int64_t cols) {
    std::vector<float> out = w;
    for (int64_t o = 0; o < rows; ++o)
      for (int64_t c = 0; c < cols; ++c) {
        double d = 0;
        for (int64_t k = 0; k < 2; ++k) d += b[o * 2 + k] * a[k * cols + c];
        out[o * cols + c] += static_cast<float>(2 * d);
      }
    return out;
  }
  fs::path root_;
};

TEST_F(LoraAdapterTest, PeftNamesAndTargets) {
  EXPECT_EQ(PeftTensorName("model.layers.3.self_attn.v_proj.weight", 'B'),
            "base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight");
  EXPECT_TRUE(IsLoraTarget("model.layers.3.mlp.down_proj.weight", {"q_proj", "down_proj"}));
  EXPECT_FALSE(IsLoraTarget("model.layers.3.mlp.down_proj.weight", {"proj"}));
  EXPECT_FALSE(IsLoraTarget("model.norm.weight", {"q_proj"}));
  WriteAdapter();
  const LoraConfig c = ReadAdapterConfig((root_ / "adapter").string());
  EXPECT_EQ(c.rank, 2);
  EXPECT_EQ(c.alpha, 4);
  EXPECT_EQ(c.scaling(), 2);
  EXPECT_EQ(c.targets, (std::vector<std::string>{"q_proj", "up_proj"}));
}

TEST_F(LoraAdapterTest, MergedWeightsAreBasePlusScaledBAExactlyInTheBaseDtype) {
  const std::vector<Spec> base = Base();
  Write((root_ / "base" / "model.safetensors").string(), base);
  WriteAdapter();
  const MergeReport r =
      MergeLora((root_ / "base").string(), (root_ / "adapter").string(), (root_ / "out").string());
  EXPECT_EQ(r.merged, 2);
  EXPECT_EQ(r.copied, 1);
  const std::string out = (root_ / "out" / "model.safetensors").string();
  std::string dtype;
  EXPECT_EQ(Read(out, base[0].name, &dtype),
            Merged(base[0].values, Ints(6, 4, 2), Ints(8, 5, 2), 4, 3));
  EXPECT_EQ(dtype, "BF16");
  EXPECT_EQ(Read(out, base[1].name, &dtype),
            Merged(base[1].values, Ints(6, 6, 2), Ints(10, 7, 2), 5, 3));
  EXPECT_EQ(dtype, "F32");
  EXPECT_EQ(Read(out, base[2].name, &dtype), base[2].values);
  EXPECT_EQ(dtype, "BF16");
  EXPECT_EQ(SafetensorsFile::Open(out).metadata().at("origin"), "test");
  for (const char* f : {"config.json", "tokenizer.json"})
    EXPECT_EQ(Text(root_ / "out" / f), Text(root_ / "base" / f)) << f;
}

TEST_F(LoraAdapterTest, ShardedBasesMergeShardByShard) {
  const std::vector<Spec> base = Base();
  Write((root_ / "base" / "model-00001-of-00002.safetensors").string(), {base[0], base[2]});
  Write((root_ / "base" / "model-00002-of-00002.safetensors").string(), {base[1]});
  std::ofstream(root_ / "base" / "model.safetensors.index.json")
      << R"({"weight_map": {")" << base[0].name << R"(": "model-00001-of-00002.safetensors", ")"
      << base[2].name << R"(": "model-00001-of-00002.safetensors", ")" << base[1].name
      << R"(": "model-00002-of-00002.safetensors"}})";
  WriteAdapter();
  EXPECT_EQ(
      MergeLora((root_ / "base").string(), (root_ / "adapter").string(), (root_ / "out").string())
          .merged,
      2);
  std::string dtype;
  EXPECT_EQ(
      Read((root_ / "out" / "model-00002-of-00002.safetensors").string(), base[1].name, &dtype),
      Merged(base[1].values, Ints(6, 6, 2), Ints(10, 7, 2), 5, 3));
  EXPECT_TRUE(fs::exists(root_ / "out" / "model.safetensors.index.json"));
}

TEST_F(LoraAdapterTest, RefusesAdaptersThatDoNotFitNamingWhy) {
  Write((root_ / "base" / "model.safetensors").string(), Base());
  const std::string base = (root_ / "base").string(), adapter = (root_ / "adapter").string();
  auto merge = [&] { MergeLora(base, adapter, (root_ / "out").string()); };
  WriteAdapter(R"("use_dora": true)");
  EXPECT_TRUE(ThrowsWith(merge, "use_dora is true: not supported"));
  WriteAdapter(R"("target_modules": "q_proj|v_proj")");
  EXPECT_TRUE(ThrowsWith(merge, "target_modules is a regular expression"));
  WriteAdapter(R"("peft_type": "IA3")");
  EXPECT_TRUE(ThrowsWith(merge, "peft_type is 'IA3': only LoRA adapters merge"));
  WriteAdapter(R"("r": 3)");
  EXPECT_TRUE(
      ThrowsWith(merge, "do not fit 'model.layers.0.self_attn.q_proj.weight' [4, 3] with r = 3"));
  EXPECT_FALSE(fs::exists(root_ / "out")) << "a failed merge left files behind";
  EXPECT_FALSE(fs::exists(root_ / "out.partial"));
  WriteAdapter("", /*extra_tensor=*/true);
  EXPECT_TRUE(ThrowsWith(
      merge,
      "tensor 'base_model.model.model.layers.9.mlp.up_proj.lora_A.weight' adapts no weight"));
  fs::remove_all(root_ / "out");
  WriteAdapter();
  merge();
  EXPECT_TRUE(ThrowsWith(merge, "exists and is not empty"));
  EXPECT_TRUE(ThrowsWith([&] { MergeLora(base, adapter, base); }, "is the base model's"));
}

}  // namespace
}  // namespace seqmesh
