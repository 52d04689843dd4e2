// LoRA training in the model (ModelOptions::lora): the adapters' gradients against finite
// differences (each projection apart, with and without dropout), a frozen base, B = 0 giving the
// base model exactly, and the PEFT files merged into the base giving the adapted model's
// logits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/hf_checkpoint.h"
#include "runtime/json.h"
#include "runtime/lora_adapter.h"
#include "runtime/lora_checkpoint.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "runtime/safetensors.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;

ModelConfig Tiny() {
  ModelConfig c;
  c.vocab = 19;
  c.hidden = 16;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 24;
  return c;
}

LoraConfig Lora(std::vector<std::string> targets, double dropout = 0) {
  LoraConfig l;
  l.rank = 3;
  l.alpha = 6;  // scaling 2
  l.dropout = dropout;
  l.targets = std::move(targets);
  return l;
}

struct Docs {
  std::vector<int32_t> tokens, targets, cu = {0, 7, 8, 12};
  explicit Docs(int64_t vocab) {
    for (int i = 0; i < 12; ++i) {
      tokens.push_back((i * 7 + 3) % vocab);
      targets.push_back((i * 5 + 1) % vocab);
    }
    targets[6] = targets[7] = kIgnoreIndex;  // the ends of documents 0 and 1
  }
  Batch View(uint64_t dropout_key = 0) const {
    Batch b{tokens.data(), targets.data(), cu.data(), 3, 12, nullptr};
    b.dropout_key = dropout_key;
    return b;
  }
};

Model Make(const LoraConfig* lora, int threads = 1) {
  ModelOptions o;
  o.max_tokens = 16;
  o.backend = MakeBackend(Device::kCpu, ExecutionContext{threads});
  if (lora) o.lora = *lora;
  o.lora_seed = 7;
  Model m(Tiny(), o);
  m.InitRandom(11, 0.3f);
  return m;
}

// B is zero at initialization (so dA is too): give every B values to test with.
void RandomizeB(Model& m) {
  uint32_t seed = 100;
  for (const Tensor& t : m.trainable())
    if (t.name().find("lora_B") != std::string::npos) {
      const std::vector<float> v = testing::RandomVector(t.numel(), seed++, 0.2f);
      std::memcpy(t.f32(), v.data(), t.bytes());
    }
}

std::vector<float> Logits(Model& m, const Batch& b) {
  std::vector<float> out(b.num_tokens * m.config().vocab);
  m.Forward(b, 1.0f, out.data());
  return out;
}

// The directional derivative of the loss along a random direction over the adapter tensors
// whose name contains `filter`: backward's against central differences (in double around the
// float loss).
void CheckDirectionalDerivative(const LoraConfig& lora, const std::string& filter,
                                uint64_t dropout_key) {
  Model m = Make(&lora);
  RandomizeB(m);
  const Docs d(m.config().vocab);
  const Batch b = d.View(dropout_key);
  m.ZeroGrad();
  m.Forward(b, 9.0f);
  m.Backward();
  std::vector<std::vector<float>> dir;
  double analytic = 0;
  uint32_t seed = 1;
  size_t touched = 0;
  for (size_t i = 0; i < m.trainable().size(); ++i) {
    const Tensor& t = m.trainable()[i];
    dir.push_back(t.name().find(filter) != std::string::npos
                      ? testing::RandomVector(t.numel(), seed++)
                      : std::vector<float>(t.numel(), 0.0f));
    touched += dir.back()[0] != 0.0f;
    for (int64_t k = 0; k < t.numel(); ++k) analytic += double(dir[i][k]) * m.grads()[i].f32()[k];
  }
  ASSERT_GT(touched, 0u) << "no adapter matches '" << filter << "'";
  auto loss_at = [&](double eps) {
    std::vector<std::vector<float>> saved;
    for (size_t i = 0; i < m.trainable().size(); ++i) {
      const Tensor& t = m.trainable()[i];
      saved.emplace_back(t.f32(), t.f32() + t.numel());
      for (int64_t k = 0; k < t.numel(); ++k) t.f32()[k] += static_cast<float>(eps * dir[i][k]);
    }
    const double loss = m.Forward(b, 9.0f);
    for (size_t i = 0; i < m.trainable().size(); ++i)
      std::memcpy(m.trainable()[i].f32(), saved[i].data(), m.trainable()[i].bytes());
    return loss;
  };
  // Central differences at h and h/2 combined (Richardson) cancel the h^2 error term.
  const double h = 4e-3;
  auto central = [&](double e) { return (loss_at(e) - loss_at(-e)) / (2 * e); };
  const double numeric = (4 * central(h / 2) - central(h)) / 3;
  // fp32 forward: the loss carries ~4e-7 of rounding, which the quotients magnify to ~2e-4;
  // 1e-3 of the derivative's scale is above that and far below what a wrong term (a missing
  // scaling, a wrong column slice, a missing dropout mask) gives (several percent and more).
  EXPECT_NEAR(numeric, analytic, 1e-3 * std::max(1.0, std::fabs(analytic)))
      << filter << " dropout_key " << dropout_key;
  EXPECT_GT(std::fabs(analytic), 1e-3) << "a derivative this small tests nothing";
}

TEST(LoraModel, GradientsOfEveryProjectionMatchFiniteDifferences) {
  const LoraConfig lora = Lora(LoraModules());
  for (const std::string& m : LoraModules()) {
    CheckDirectionalDerivative(lora, m + ".lora_A", 0);
    CheckDirectionalDerivative(lora, m + ".lora_B", 0);
  }
}

TEST(LoraModel, GradientsWithDropoutMatchFiniteDifferencesUnderTheSameMasks) {
  const LoraConfig lora = Lora({"q_proj", "v_proj", "o_proj", "down_proj"}, 0.3);
  for (const char* m : {"q_proj", "v_proj", "o_proj", "down_proj"}) {
    CheckDirectionalDerivative(lora, std::string(m) + ".lora_A", 12345);
    CheckDirectionalDerivative(lora, std::string(m) + ".lora_B", 12345);
  }
}

TEST(LoraModel, DropoutChangesTheLossOnlyWithAKeyAndIsThreadIndependent) {
  const LoraConfig lora = Lora({"q_proj", "up_proj"}, 0.5);
  Model one = Make(&lora, 1), two = Make(&lora, 2);
  RandomizeB(one);
  RandomizeB(two);
  const Docs d(one.config().vocab);
  const float off = one.Forward(d.View(0), 1.0f);
  const float key1 = one.Forward(d.View(1), 1.0f), key2 = one.Forward(d.View(2), 1.0f);
  EXPECT_NE(off, key1);
  EXPECT_NE(key1, key2);
  EXPECT_EQ(key1, one.Forward(d.View(1), 1.0f));
  one.ZeroGrad();
  two.ZeroGrad();
  EXPECT_EQ(one.Forward(d.View(5), 1.0f), two.Forward(d.View(5), 1.0f));
  one.Backward();
  two.Backward();
  for (size_t i = 0; i < one.grads().size(); ++i)
    EXPECT_EQ(0, std::memcmp(one.grads()[i].data(), two.grads()[i].data(), one.grads()[i].bytes()))
        << one.grads()[i].name();
}

TEST(LoraModel, ZeroBGivesTheBaseModelExactly) {
  const LoraConfig lora = Lora(LoraModules(), 0.1);
  Model base = Make(nullptr), adapted = Make(&lora);
  const Docs d(base.config().vocab);
  EXPECT_EQ(Logits(base, d.View()), Logits(adapted, d.View()));
  EXPECT_EQ(base.Forward(d.View(), 5.0f), adapted.Forward(d.View(), 5.0f));
}

TEST(LoraModel, TrainsOnlyTheAdaptersAndLeavesTheBaseBitwiseUnchanged) {
  const LoraConfig lora = Lora({"q_proj", "k_proj", "v_proj", "o_proj"});
  Model m = Make(&lora);
  // Only the adapters have gradients: 2 layers x 4 projections x (A, B).
  ASSERT_EQ(m.grads().size(), 16u);
  ASSERT_EQ(m.trainable().size(), 16u);
  EXPECT_EQ(m.trainable()[0].name(), "model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(m.grads()[1].name(), "grad.model.layers.0.self_attn.q_proj.lora_B.weight");
  ASSERT_EQ(m.trainable_layout().groups.size(), 2u);  // one bucket per layer
  std::vector<std::vector<float>> base;
  for (const Tensor& p : m.params()) base.emplace_back(p.f32(), p.f32() + p.numel());
  const std::vector<float> a0(m.trainable()[0].f32(), m.trainable()[0].f32() + 48);
  AdamWConfig oc;
  oc.weight_decay = 0.1f;
  AdamW adamw(m.trainable(), oc, {m.shared_backend()});
  const Docs d(m.config().vocab);
  float first = 0, last = 0;
  for (int s = 0; s < 8; ++s) {
    m.ZeroGrad();
    last = m.Forward(d.View(), 10.0f);
    if (s == 0) first = last;
    m.Backward();
    adamw.Step(m.trainable(), m.grads(), 1e-2f, 1.0f);
  }
  EXPECT_LT(last, first);
  for (size_t i = 0; i < m.params().size(); ++i)
    EXPECT_EQ(0, std::memcmp(base[i].data(), m.params()[i].data(), m.params()[i].bytes()))
        << m.params()[i].name() << " changed";
  EXPECT_NE(0, std::memcmp(a0.data(), m.trainable()[0].data(), a0.size() * sizeof(float)));
}

TEST(LoraModel, PeftFilesHavePeftNamesAndShapesAndMergeIntoTheAdaptedModel) {
  const fs::path dir = fs::temp_directory_path() / ("lora_model_test_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const LoraConfig lora = Lora({"k_proj", "gate_proj", "down_proj"}, 0.2);
  Model adapted = Make(&lora);
  RandomizeB(adapted);
  SaveHfModel(adapted, (dir / "base").string(), ExportDType::kFloat32);
  const std::vector<std::string> files = SaveLoraAdapter(adapted, (dir / "adapter").string());
  EXPECT_EQ(files, (std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors"}));

  const LoraConfig read = ReadAdapterConfig((dir / "adapter").string());
  EXPECT_EQ(read.rank, 3);
  EXPECT_EQ(read.alpha, 6);
  EXPECT_EQ(read.targets, lora.targets);
  SafetensorsFile f = SafetensorsFile::Open((dir / "adapter/adapter_model.safetensors").string());
  ASSERT_EQ(f.entries().size(), 12u);  // 2 layers x 3 projections x (A, B)
  const SafetensorsEntry* a =
      f.Find("base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight");
  const SafetensorsEntry* b =
      f.Find("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight");
  const SafetensorsEntry* d = f.Find("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
  ASSERT_TRUE(a && b && d);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 16}));  // r x hidden
  EXPECT_EQ(b->shape, (std::vector<int64_t>{8, 3}));   // kv_heads * head_dim x r
  EXPECT_EQ(d->shape, (std::vector<int64_t>{3, 24}));  // r x ffn

  MergeLora((dir / "base").string(), (dir / "adapter").string(), (dir / "merged").string());
  Model merged = Make(nullptr);
  LoadHfWeights(merged, (dir / "merged").string());
  const Docs docs(merged.config().vocab);
  const std::vector<float> want = Logits(adapted, docs.View()), got = Logits(merged, docs.View());
  // W + s B A rounded once to f32 against x W^T + s (x A^T) B^T: the same sum in another order.
  EXPECT_LT(testing::RelError(got.data(), want.data(), static_cast<int64_t>(want.size())), 1e-5);
  Model base = Make(nullptr);
  EXPECT_NE(Logits(base, docs.View()), want);  // the adapters do change the logits

  // Back into a LoRA model of the same configuration: the same logits bit for bit.
  Model again = Make(&lora);
  EXPECT_EQ(CheckLoraAdapter(again, (dir / "adapter").string()), "");  // a seed-made base
  LoadLoraAdapter(again, (dir / "adapter").string());
  EXPECT_EQ(Logits(again, docs.View()), want);
  fs::remove_all(dir);
}

TEST(LoraModel, RefusesAdaptersOfAnotherConfigurationAndBadTargets) {
  const fs::path dir = fs::temp_directory_path() / ("lora_model_bad_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const LoraConfig lora = Lora({"q_proj", "v_proj"});
  Model m = Make(&lora);
  SaveLoraAdapter(m, dir.string());
  LoraConfig other = lora;
  other.rank = 4;
  Model m4 = Make(&other);
  EXPECT_TRUE(testing::ThrowsWith([&] { CheckLoraAdapter(m4, dir.string()); },
                                  "has r = 3 but lora.rank is 4"));
  other = lora;
  other.targets = {"q_proj", "k_proj"};
  Model mk = Make(&other);
  EXPECT_TRUE(testing::ThrowsWith([&] { CheckLoraAdapter(mk, dir.string()); },
                                  "adapts other modules than lora.targets"));
  Model plain = Make(nullptr);
  EXPECT_TRUE(testing::ThrowsWith([&] { CheckLoraAdapter(plain, dir.string()); },
                                  "this run has no [lora]"));
  LoraConfig bad = lora;
  bad.targets = {"q_proj", "qkv_proj"};
  EXPECT_TRUE(testing::ThrowsWith([&] { Make(&bad); },
                                  "\"qkv_proj\" is not a projection of a Llama layer"));
  bad.targets = {"q_proj", "q_proj"};
  EXPECT_TRUE(testing::ThrowsWith([&] { Make(&bad); }, "lists \"q_proj\" twice"));
  bad = lora;
  bad.dropout = 1;
  EXPECT_TRUE(testing::ThrowsWith([&] { Make(&bad); }, "lora.dropout must be in [0, 1)"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace seqmesh
