// A LoRA model's adapters on disk in Hugging Face PEFT's format (runtime/lora_adapter.h): the
// trainer's checkpoints of a LoRA run hold these two files in place of model.safetensors, and
// `seqmesh export --merge-lora` merges them into the base.
#pragma once

#include <string>
#include <vector>

#include "runtime/model.h"

namespace seqmesh {

// Writes DIR/adapter_config.json (the model's r, lora_alpha, lora_dropout and target_modules;
// base_model_name_or_path: the absolute directory its base weights were loaded from, or "" for
// a base seqmesh initialized from training.seed) and DIR/adapter_model.safetensors (F32, PEFT's
// names). Returns the file names written. The model must be a LoRA model.
std::vector<std::string> SaveLoraAdapter(const Model& model, const std::string& dir);

// The adapter directory's base model (base_model_name_or_path), checked against the model's
// [lora]: r, lora_alpha, lora_dropout and target_modules must be the model's (an adapter of
// another configuration is refused, naming the field).
std::string CheckLoraAdapter(const Model& model, const std::string& dir);
// Reads the adapters of DIR/adapter_model.safetensors into the model (after CheckLoraAdapter):
// every adapter tensor of the model must be there with its shape, and nothing else.
void LoadLoraAdapter(Model& model, const std::string& dir);

}  // namespace seqmesh
