// Hugging Face Llama checkpoints: a directory with config.json and model.safetensors (or shards
// listed in model.safetensors.index.json), Llama tensor names, and the tokenizer's files. This is
// how fine-tuning starts (`--init-from DIR`) and how trained weights leave seqmesh for Hugging
// Face tools.
//
// The round trip is faithful: a model loaded from a directory remembers it (HfSource, on the
// Model), and every directory written from that model is the source's config.json with only the
// fields the model changed replaced (every other key and every number's text as read), the
// weights in the dtypes they were read in (unless checkpoint.export_dtype says otherwise), and
// the source's tokenizer and generation files copied, so a checkpoint is a complete Hugging Face
// model directory.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "runtime/json.h"
#include "runtime/model.h"

namespace seqmesh {

// checkpoint.export_dtype: the dtype of written weights. auto: each tensor as it was read (F32,
// BF16 or F16), F32 for weights not read from a directory; float32 or bfloat16: every tensor.
enum class ExportDType { kAuto, kFloat32, kBfloat16 };
const std::vector<std::string>& ExportDTypeNames();  // "auto", "float32", "bfloat16"
const std::string& Name(ExportDType dtype);

// What a Hugging Face directory brings along besides the weights.
struct HfSource {
  std::string dir;
  Json config;                                // config.json as parsed (null if there is none)
  std::map<std::string, std::string> dtypes;  // safetensors dtype of each tensor loaded
  std::vector<std::pair<std::string, std::string>> files;  // HfCompanionFile()s: name, bytes
};

// The files of a model directory a checkpoint copies along: tokenizer.json,
// tokenizer_config.json, special_tokens_map.json, tokenizer.model, *.tiktoken, vocab.json,
// merges.txt, added_tokens.json, chat_template.jinja and generation_config.json.
bool HfCompanionFile(const std::string& name);

// The model config.json describes. Features the model does not implement (biases, a rope type
// other than default, linear or llama3, an activation other than silu, head_dim != hidden /
// heads) are errors naming the key and the value. `where` prefixes every message.
ModelConfig HfModelConfig(const Json& config, const std::string& where);
ModelConfig ReadHfConfig(const std::string& path);
// max_position_embeddings of config.json: the longest sequence the model was made for (what
// generation may fill); 0 when the file names none (seqmesh's own configs).
int64_t ReadHfMaxPositions(const std::string& path);
// The config.json of `c`: `source` (a parsed config.json) with only the fields whose value
// differs from `c` replaced (unchanged members keep their text and place), or a fresh one when
// source is null. torch_dtype (or dtype, whichever the source uses) is set to `torch_dtype`.
Json HfConfigJson(const ModelConfig& c, const Json* source, const std::string& torch_dtype);

// Writes dir/config.json, dir/model.safetensors and the source's companion files, each
// atomically; returns their names relative to dir.
std::vector<std::string> SaveHfModel(const Model& model, const std::string& dir,
                                     ExportDType dtype = ExportDType::kAuto);
// Loads every parameter of `model` from dir (single file or shards; F32, BF16 or F16) and makes
// dir the model's HfSource (config.json, if there is one, must be one HfModelConfig accepts). A
// missing tensor or one of another shape is an error naming it, and so is a tensor the model
// does not have (a tied model ignores a stored lm_head.weight).
void LoadHfWeights(Model& model, const std::string& dir);

}  // namespace seqmesh
