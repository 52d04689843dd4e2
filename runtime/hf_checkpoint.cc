#include "runtime/hf_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "runtime/files.h"
#include "runtime/json.h"
#include "runtime/safetensors.h"

namespace seqmesh {
namespace {

std::string ReadText(const std::string& path) {
  MappedFile f(path);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

}  // namespace

ModelConfig ReadHfConfig(const std::string& path) {
  const Json j = Json::Parse(ReadText(path), "'" + path + "'");
  const std::string where = "'" + path + "': ";
  auto need = [&](const char* key) -> const Json& {
    const Json* v = j.Find(key);
    SM_CHECK(v != nullptr) << where << "missing key \"" << key << "\"";
    return *v;
  };
  auto field = [&](const char* key) { return where + key; };
  ModelConfig c;
  c.vocab = need("vocab_size").AsInt(field("vocab_size"));
  c.hidden = need("hidden_size").AsInt(field("hidden_size"));
  c.ffn = need("intermediate_size").AsInt(field("intermediate_size"));
  c.layers = need("num_hidden_layers").AsInt(field("num_hidden_layers"));
  c.heads = need("num_attention_heads").AsInt(field("num_attention_heads"));
  const Json* kv = j.Find("num_key_value_heads");
  c.kv_heads = kv && !kv->is_null() ? kv->AsInt(field("num_key_value_heads")) : c.heads;
  if (const Json* v = j.Find("rms_norm_eps"))
    c.norm_eps = static_cast<float>(v->AsDouble(field("rms_norm_eps")));
  if (const Json* v = j.Find("rope_theta"))
    c.rope_theta = static_cast<float>(v->AsDouble(field("rope_theta")));
  if (const Json* v = j.Find("tie_word_embeddings"))
    c.tie_embeddings = v->AsBool(field("tie_word_embeddings"));
  if (const Json* v = j.Find("hidden_act")) {
    SM_CHECK(v->AsString(field("hidden_act")) == "silu")
        << where << "hidden_act \"" << v->AsString("") << "\" is not supported (only silu)";
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (const Json* v = j.Find(key)) {
      SM_CHECK(!v->AsBool(field(key))) << where << key << " = true is not supported";
    }
  }
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    const Json* v = j.Find(key);
    if (!v || v->is_null()) continue;
    const Json* type = v->Find("rope_type");
    const bool plain = type && type->is_string() && type->AsString(field(key)) == "default";
    SM_CHECK(plain) << where << key << " is set; RoPE scaling is not supported yet";
  }
  if (const Json* v = j.Find("head_dim"); v && !v->is_null()) {
    SM_CHECK(v->AsInt(field("head_dim")) * c.heads == c.hidden)
        << where << "head_dim " << v->AsInt("") << " x num_attention_heads " << c.heads
        << " != hidden_size " << c.hidden << ": not supported";
  }
  c.Validate();
  return c;
}

int64_t ReadHfMaxPositions(const std::string& path) {
  const Json j = Json::Parse(ReadText(path), "'" + path + "'");
  const Json* v = j.Find("max_position_embeddings");
  if (!v || v->is_null()) return 0;
  const int64_t n = v->AsInt("'" + path + "': max_position_embeddings");
  SM_CHECK(n >= 1) << "'" << path << "': max_position_embeddings must be >= 1, got " << n;
  return n;
}

void WriteHfConfig(const ModelConfig& c, const std::string& path) {
  Json j = Json::Object();
  j.Set("architectures", Json::Array({Json::String("LlamaForCausalLM")}));
  j.Set("model_type", Json::String("llama"));
  j.Set("vocab_size", Json::Integer(c.vocab));
  j.Set("hidden_size", Json::Integer(c.hidden));
  j.Set("intermediate_size", Json::Integer(c.ffn));
  j.Set("num_hidden_layers", Json::Integer(c.layers));
  j.Set("num_attention_heads", Json::Integer(c.heads));
  j.Set("num_key_value_heads", Json::Integer(c.kv_heads));
  j.Set("head_dim", Json::Integer(c.head_dim()));
  j.Set("hidden_act", Json::String("silu"));
  j.Set("rms_norm_eps", Json::Number(c.norm_eps));
  j.Set("rope_theta", Json::Number(c.rope_theta));
  j.Set("rope_scaling", Json());
  j.Set("tie_word_embeddings", Json::Bool(c.tie_embeddings));
  j.Set("attention_bias", Json::Bool(false));
  j.Set("mlp_bias", Json::Bool(false));
  j.Set("torch_dtype", Json::String("float32"));
  const std::string text = j.Dump() + "\n";
  WriteFileAtomically(path, text.data(), text.size());
}

void SaveHfModel(const Model& model, const std::string& dir, bool bf16) {
  std::filesystem::create_directories(dir);
  WriteSafetensors(dir + "/model.safetensors", model.params(), bf16);
  WriteHfConfig(model.config(), dir + "/config.json");
}

void LoadHfWeights(Model& model, const std::string& dir) {
  // The files: one model.safetensors, or the shards named by the index's weight_map.
  std::vector<std::string> files;
  const std::string index = dir + "/model.safetensors.index.json";
  if (std::filesystem::exists(index)) {
    const Json j = Json::Parse(ReadText(index), "'" + index + "'");
    const Json* map = j.Find("weight_map");
    SM_CHECK(map != nullptr) << "'" << index << "' has no weight_map";
    std::set<std::string> shards;
    for (const auto& [name, file] : map->AsObject("'" + index + "' weight_map"))
      shards.insert(file.AsString("'" + index + "' weight_map." + name));
    for (const std::string& s : shards) files.push_back(dir + "/" + s);
  } else {
    files.push_back(dir + "/model.safetensors");
  }
  std::map<std::string, const Tensor*> wanted;
  for (const Tensor& p : model.params()) wanted[p.name()] = &p;
  std::set<std::string> loaded;
  for (const std::string& path : files) {
    SafetensorsFile f = SafetensorsFile::Open(path);
    for (const SafetensorsEntry& e : f.entries()) {
      auto it = wanted.find(e.name);
      if (it == wanted.end()) {
        if (model.config().tie_embeddings && e.name == "lm_head.weight") continue;
        SM_CHECK(false) << "'" << path << "' has tensor '" << e.name
                        << "', which this model does not have";
      }
      SM_CHECK(loaded.insert(e.name).second)
          << "tensor '" << e.name << "' appears in more than one file of '" << dir << "'";
      f.ReadInto(e.name, *it->second);
    }
  }
  for (const auto& [name, t] : wanted)
    SM_CHECK(loaded.count(name)) << "'" << dir << "' has no tensor '" << name << "'";
}

}  // namespace seqmesh
