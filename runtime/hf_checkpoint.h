// Hugging Face Llama checkpoints: a directory with config.json and model.safetensors (or shards
// listed in model.safetensors.index.json), Llama tensor names. This is how fine-tuning starts
// (`--init-from DIR`) and how trained weights leave seqmesh for Hugging Face tools.
#pragma once

#include <string>

#include "runtime/model.h"

namespace seqmesh {

// Reads config.json. Features the model does not implement (biases, rope_scaling, an activation
// other than silu, head_dim != hidden / heads) are errors naming the key.
ModelConfig ReadHfConfig(const std::string& path);
void WriteHfConfig(const ModelConfig& config, const std::string& path);
// max_position_embeddings of config.json: the longest sequence the model was made for (what
// generation may fill); 0 when the file names none (seqmesh's own configs).
int64_t ReadHfMaxPositions(const std::string& path);

// Writes dir/config.json and dir/model.safetensors (F32, or BF16 when bf16), each atomically.
void SaveHfModel(const Model& model, const std::string& dir, bool bf16 = false);
// Loads every parameter of `model` from dir (single file or shards; F32, BF16 or F16). A missing
// tensor or one of another shape is an error naming it, and so is a tensor the model does not
// have (a tied model ignores a stored lm_head.weight).
void LoadHfWeights(Model& model, const std::string& dir);

}  // namespace seqmesh
