// LoRA adapters as Hugging Face PEFT stores them, and their merge into a base model.
//
// An adapter directory holds adapter_config.json ({"peft_type": "LORA", "r", "lora_alpha",
// "lora_dropout", "target_modules", "bias": "none", ...}) and adapter_model.safetensors with, for
// each adapted weight `model.layers.0.self_attn.q_proj.weight` (out x in), PEFT's names
//   base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight   (r x in)
//   base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight   (out x r)
// The adapted weight is W + (lora_alpha / r) B A (PEFT's scaling; rsLoRA, DoRA, biases and
// fan_in_fan_out are refused by name).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqmesh {

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0;
  std::vector<std::string> targets;  // module names: q_proj, k_proj, ... (PEFT's suffix match)
  std::string base_model;            // base_model_name_or_path
  double scaling() const { return alpha / static_cast<double>(rank); }
};

// The projections of a Llama layer that can carry an adapter, in the model's order.
const std::vector<std::string>& LoraModules();
// Checks a [lora] configuration for training (rank >= 1, alpha > 0, dropout in [0, 1), targets
// among LoraModules() without repeats); errors name the key.
void ValidateLoraTraining(const LoraConfig& config);

// PEFT's adapter tensor name of a base weight ("model.layers.0.mlp.up_proj.weight"), `which` is
// 'A' or 'B'.
std::string PeftTensorName(const std::string& weight_name, char which);
// Whether `weight_name` is a weight of one of `targets` (its module's last name is one).
bool IsLoraTarget(const std::string& weight_name, const std::vector<std::string>& targets);

void WriteAdapterConfig(const std::string& dir, const LoraConfig& config);
// Reads DIR/adapter_config.json; errors name the file and the field.
LoraConfig ReadAdapterConfig(const std::string& dir);

struct MergeReport {
  int64_t merged = 0, copied = 0;  // tensors
};
// Writes to `out_dir` the Hugging Face model of `base_dir` (model.safetensors or its shards, and
// every other file copied) with each adapted weight replaced by W + (alpha / r) B A, computed in
// fp32 (B A summed over r in order) and stored in the base tensor's dtype (F32 or BF16, rounded
// to nearest even). Every adapter tensor must meet its base weight with matching shapes.
MergeReport MergeLora(const std::string& base_dir, const std::string& adapter_dir,
                      const std::string& out_dir);

}  // namespace seqmesh
