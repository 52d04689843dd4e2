#include "runtime/lora_checkpoint.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "runtime/check.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/safetensors.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPeftPrefix = "base_model.model.";

}  // namespace

std::vector<std::string> SaveLoraAdapter(const Model& model, const std::string& dir) {
  SM_CHECK(model.lora()) << "SaveLoraAdapter: the model has no LoRA adapters";
  LoraConfig c = model.options().lora;
  c.base_model.clear();
  if (model.hf_source() && !model.hf_source()->dir.empty())
    c.base_model = fs::absolute(model.hf_source()->dir).lexically_normal().string();
  WriteAdapterConfig(dir, c);
  std::vector<Tensor> named;
  for (const Tensor& a : model.trainable())
    named.emplace_back(kPeftPrefix + a.name(), a.dtype(), a.shape(), a.data(), a.device());
  WriteSafetensors(dir + "/adapter_model.safetensors", named, false);
  return {"adapter_config.json", "adapter_model.safetensors"};
}

std::string CheckLoraAdapter(const Model& model, const std::string& dir) {
  SM_CHECK(model.lora()) << "'" << dir << "' holds LoRA adapters but this run has no [lora] "
                         << "(set lora.rank and lora.targets as the run that wrote it did)";
  const LoraConfig saved = ReadAdapterConfig(dir);
  const LoraConfig& mine = model.options().lora;
  const std::string w = "'" + dir + "/adapter_config.json'";
  SM_CHECK(saved.rank == mine.rank)
      << w << " has r = " << saved.rank << " but lora.rank is " << mine.rank;
  SM_CHECK(std::abs(saved.alpha - mine.alpha) <= 1e-12 * std::abs(mine.alpha))
      << w << " has lora_alpha = " << saved.alpha << " but lora.alpha is " << mine.alpha;
  SM_CHECK(std::abs(saved.dropout - mine.dropout) <= 1e-12)
      << w << " has lora_dropout = " << saved.dropout << " but lora.dropout is " << mine.dropout;
  SM_CHECK(std::set<std::string>(saved.targets.begin(), saved.targets.end()) ==
           std::set<std::string>(mine.targets.begin(), mine.targets.end()))
      << w << " adapts other modules than lora.targets; use the targets it lists";
  return saved.base_model;
}

void LoadLoraAdapter(Model& model, const std::string& dir) {
  const std::string path = dir + "/adapter_model.safetensors";
  SafetensorsFile f = SafetensorsFile::Open(path);
  std::map<std::string, const Tensor*> wanted;
  for (const Tensor& a : model.trainable()) wanted[kPeftPrefix + a.name()] = &a;
  std::set<std::string> loaded;
  for (const SafetensorsEntry& e : f.entries()) {
    const auto it = wanted.find(e.name);
    SM_CHECK(it != wanted.end()) << "'" << path << "' has tensor '" << e.name
                                 << "', which is no adapter of this model";
    f.ReadInto(e.name, *it->second);
    loaded.insert(e.name);
  }
  for (const auto& [name, t] : wanted)
    SM_CHECK(loaded.count(name)) << "'" << path << "' has no tensor '" << name << "'";
}

}  // namespace seqmesh
