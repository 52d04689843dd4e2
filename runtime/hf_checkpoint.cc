#include "runtime/hf_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "runtime/files.h"
#include "runtime/safetensors.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;

std::string ReadText(const std::string& path) {
  MappedFile f(path);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

// rope_scaling (or rope_parameters, transformers 5's name, which may hold rope_theta too): the
// scaling it names. The type is rope_type, or type in configs older than transformers 4.43.
RopeScaling HfRopeScaling(const Json& v, const std::string& key, const std::string& where) {
  SM_CHECK(v.is_object()) << where << key << " must be an object or null";
  std::string type_key = key + ".rope_type";
  const Json* type = v.Find("rope_type");
  if (type == nullptr) {
    type_key = key + ".type";
    type = v.Find("type");
  }
  SM_CHECK(type != nullptr) << where << key << " has no rope_type";
  const std::string& name = type->AsString(where + type_key);
  auto number = [&](const char* k) {
    const Json* f = v.Find(k);
    SM_CHECK(f != nullptr && !f->is_null())
        << where << key << "." << k << " is missing (rope_type \"" << name << "\" needs it)";
    const double x = f->AsDouble(where + key + "." + k);
    SM_CHECK(std::isfinite(x)) << where << key << "." << k << " must be finite";
    return x;
  };
  RopeScaling s;
  if (name == "default") return s;
  if (name == "linear") {
    s.type = RopeType::kLinear;
    s.factor = number("factor");
  } else if (name == "llama3") {
    s.type = RopeType::kLlama3;
    s.factor = number("factor");
    s.low_freq_factor = number("low_freq_factor");
    s.high_freq_factor = number("high_freq_factor");
    const double n = number("original_max_position_embeddings");
    SM_CHECK(n >= 1 && n <= 1e15 && n == std::floor(n))
        << where << key << ".original_max_position_embeddings must be a positive integer, got "
        << n;
    s.original_max_positions = static_cast<int64_t>(n);
    SM_CHECK(s.low_freq_factor > 0)
        << where << key << ".low_freq_factor must be > 0, got " << s.low_freq_factor;
    SM_CHECK(s.high_freq_factor > s.low_freq_factor)
        << where << key << ".high_freq_factor (" << s.high_freq_factor
        << ") must be greater than low_freq_factor (" << s.low_freq_factor << ")";
  } else {
    SM_CHECK(false) << where << type_key << " \"" << name
                    << "\" is not supported (seqmesh implements default, linear and llama3)";
  }
  SM_CHECK(s.factor >= 1) << where << key << ".factor must be >= 1, got " << s.factor;
  return s;
}

// rope_scaling as Hugging Face writes it (null for the default).
Json RopeScalingJson(const RopeScaling& s) {
  if (s.type == RopeType::kDefault) return Json();
  Json j = Json::Object();
  j.Set("factor", Json::Number(s.factor));
  if (s.type == RopeType::kLlama3) {
    j.Set("high_freq_factor", Json::Number(s.high_freq_factor));
    j.Set("low_freq_factor", Json::Number(s.low_freq_factor));
    j.Set("original_max_position_embeddings", Json::Integer(s.original_max_positions));
  }
  j.Set("rope_type", Json::String(Name(s.type)));
  return j;
}

const char* TorchDType(const std::string& safetensors_dtype) {
  if (safetensors_dtype == "BF16") return "bfloat16";
  if (safetensors_dtype == "F16") return "float16";
  return "float32";
}

}  // namespace

const std::vector<std::string>& ExportDTypeNames() {
  static const std::vector<std::string> names = {"auto", "float32", "bfloat16"};
  return names;
}

const std::string& Name(ExportDType dtype) {
  return ExportDTypeNames().at(static_cast<size_t>(dtype));
}

bool HfCompanionFile(const std::string& name) {
  static const std::set<std::string> names = {"tokenizer.json",
                                              "tokenizer_config.json",
                                              "special_tokens_map.json",
                                              "tokenizer.model",
                                              "vocab.json",
                                              "merges.txt",
                                              "added_tokens.json",
                                              "chat_template.jinja",
                                              "generation_config.json"};
  return names.count(name) > 0 ||
         (name.size() > 9 && name.compare(name.size() - 9, 9, ".tiktoken") == 0);
}

ModelConfig HfModelConfig(const Json& j, const std::string& where) {
  SM_CHECK(j.is_object()) << where << "config.json must be a JSON object";
  auto need = [&](const char* key) -> const Json& {
    const Json* v = j.Find(key);
    SM_CHECK(v != nullptr) << where << "missing key \"" << key << "\"";
    return *v;
  };
  auto field = [&](const std::string& key) { return where + key; };
  ModelConfig c;
  c.vocab = need("vocab_size").AsInt(field("vocab_size"));
  c.hidden = need("hidden_size").AsInt(field("hidden_size"));
  c.ffn = need("intermediate_size").AsInt(field("intermediate_size"));
  c.layers = need("num_hidden_layers").AsInt(field("num_hidden_layers"));
  c.heads = need("num_attention_heads").AsInt(field("num_attention_heads"));
  const Json* kv = j.Find("num_key_value_heads");
  c.kv_heads = kv && !kv->is_null() ? kv->AsInt(field("num_key_value_heads")) : c.heads;
  c.norm_eps = 1e-6f;  // LlamaConfig's default
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
  const Json* scaling = j.Find("rope_scaling");
  if (scaling && !scaling->is_null())
    c.rope_scaling = HfRopeScaling(*scaling, "rope_scaling", where);
  if (const Json* params = j.Find("rope_parameters"); params && !params->is_null()) {
    const RopeScaling p = HfRopeScaling(*params, "rope_parameters", where);
    SM_CHECK(!scaling || scaling->is_null() || p == c.rope_scaling)
        << where << "rope_scaling and rope_parameters name different RoPE scalings";
    c.rope_scaling = p;
    if (const Json* theta = params->Find("rope_theta"))
      c.rope_theta = static_cast<float>(theta->AsDouble(field("rope_parameters.rope_theta")));
  }
  if (const Json* v = j.Find("head_dim"); v && !v->is_null()) {
    SM_CHECK(v->AsInt(field("head_dim")) * c.heads == c.hidden)
        << where << "head_dim " << v->AsInt("") << " x num_attention_heads " << c.heads
        << " != hidden_size " << c.hidden << ": not supported";
  }
  c.Validate();
  return c;
}

ModelConfig ReadHfConfig(const std::string& path) {
  return HfModelConfig(Json::Parse(ReadText(path), "'" + path + "'"), "'" + path + "': ");
}

int64_t ReadHfMaxPositions(const std::string& path) {
  const Json j = Json::Parse(ReadText(path), "'" + path + "'");
  const Json* v = j.Find("max_position_embeddings");
  if (!v || v->is_null()) return 0;
  const int64_t n = v->AsInt("'" + path + "': max_position_embeddings");
  SM_CHECK(n >= 1) << "'" << path << "': max_position_embeddings must be >= 1, got " << n;
  return n;
}

Json HfConfigJson(const ModelConfig& c, const Json* source, const std::string& torch_dtype) {
  if (source == nullptr || source->is_null()) {
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
    j.Set("rms_norm_eps", Json::Float(c.norm_eps));
    j.Set("rope_theta", Json::Float(c.rope_theta));
    j.Set("rope_scaling", RopeScalingJson(c.rope_scaling));
    j.Set("tie_word_embeddings", Json::Bool(c.tie_embeddings));
    j.Set("attention_bias", Json::Bool(false));
    j.Set("mlp_bias", Json::Bool(false));
    j.Set("torch_dtype", Json::String(torch_dtype));
    return j;
  }
  // What the source says, as the reader sees it; each field the model changed is replaced.
  Json j = *source;
  const ModelConfig s = HfModelConfig(j, "the source config.json: ");
  auto integer = [&](const char* key, int64_t ours, int64_t theirs) {
    if (ours != theirs) j.Put(key, Json::Integer(ours));
  };
  integer("vocab_size", c.vocab, s.vocab);
  integer("hidden_size", c.hidden, s.hidden);
  integer("intermediate_size", c.ffn, s.ffn);
  integer("num_hidden_layers", c.layers, s.layers);
  integer("num_attention_heads", c.heads, s.heads);
  integer("num_key_value_heads", c.kv_heads, s.kv_heads);
  if (const Json* hd = j.Find("head_dim"); hd && !hd->is_null())
    integer("head_dim", c.head_dim(), s.head_dim());
  if (c.norm_eps != s.norm_eps) j.Put("rms_norm_eps", Json::Float(c.norm_eps));
  if (c.tie_embeddings != s.tie_embeddings)
    j.Put("tie_word_embeddings", Json::Bool(c.tie_embeddings));
  if (c.rope_theta != s.rope_theta || !(c.rope_scaling == s.rope_scaling)) {
    const Json* params = j.Find("rope_parameters");
    if (params && !params->is_null()) {
      Json p = RopeScalingJson(c.rope_scaling);
      if (p.is_null()) p = Json::Object({{"rope_type", Json::String("default")}});
      p.Put("rope_theta", Json::Float(c.rope_theta));
      j.Put("rope_parameters", std::move(p));
      if (j.Find("rope_scaling")) j.Put("rope_scaling", RopeScalingJson(c.rope_scaling));
    } else {
      j.Put("rope_theta", Json::Float(c.rope_theta));
      j.Put("rope_scaling", RopeScalingJson(c.rope_scaling));
    }
  }
  // transformers 4.56 renamed torch_dtype to dtype: keep whichever the source has.
  const char* dtype_key = j.Find("dtype") && !j.Find("torch_dtype") ? "dtype" : "torch_dtype";
  const Json* d = j.Find(dtype_key);
  if (!d || !d->is_string() || d->AsString("") != torch_dtype)
    j.Put(dtype_key, Json::String(torch_dtype));
  return j;
}

std::vector<std::string> SaveHfModel(const Model& model, const std::string& dir,
                                     ExportDType dtype) {
  fs::create_directories(dir);
  const HfSource* source = model.hf_source().get();
  std::vector<std::string> dtypes;
  for (const Tensor& p : model.params()) {
    std::string d = dtype == ExportDType::kBfloat16 ? "BF16" : "F32";
    if (dtype == ExportDType::kAuto && source) {
      const auto it = source->dtypes.find(p.name());
      if (it != source->dtypes.end()) d = it->second;
    }
    dtypes.push_back(std::move(d));
  }
  WriteSafetensors(dir + "/model.safetensors", model.params(), dtypes, {}, model.param_access());
  // One file now: an index left by sharded weights written here before would name stale shards.
  fs::remove(dir + "/model.safetensors.index.json");
  // torch_dtype: the first parameter's, as transformers' save_pretrained takes it.
  const Json config =
      HfConfigJson(model.config(), source ? &source->config : nullptr, TorchDType(dtypes.front()));
  const std::string text = config.Dump(2) + "\n";
  WriteFileAtomically(dir + "/config.json", text.data(), text.size());
  std::vector<std::string> files = {"config.json", "model.safetensors"};
  if (source) {
    for (const auto& [name, bytes] : source->files) {
      WriteFileAtomically(dir + "/" + name, bytes.data(), bytes.size());
      files.push_back(name);
    }
  }
  return files;
}

void LoadHfWeights(Model& model, const std::string& dir) {
  auto source = std::make_shared<HfSource>();
  source->dir = dir;
  const std::string config = dir + "/config.json";
  if (fs::exists(config)) {
    source->config = Json::Parse(ReadText(config), "'" + config + "'");
    HfModelConfig(source->config, "'" + config + "': ");  // one the writer can update
  }
  // The files: one model.safetensors, or the shards named by the index's weight_map.
  std::vector<std::string> files;
  const std::string index = dir + "/model.safetensors.index.json";
  if (fs::exists(index)) {
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
  std::map<std::string, size_t> wanted;  // name -> index in params()
  for (size_t i = 0; i < model.params().size(); ++i) wanted[model.params()[i].name()] = i;
  const ParamAccess& access = model.param_access();
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
      if (access) access.before(it->second, /*overwrite=*/true);
      f.ReadInto(e.name, model.params()[it->second]);
      if (access) access.after(it->second, /*changed=*/true);
      source->dtypes[e.name] = e.dtype;
    }
  }
  for (const auto& [name, t] : wanted)
    SM_CHECK(loaded.count(name)) << "'" << dir << "' has no tensor '" << name << "'";
  // The companion files, read now: the directory (a checkpoint pruned later) may not last.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && HfCompanionFile(e.path().filename().string()))
      names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  for (const std::string& name : names)
    source->files.emplace_back(name, ReadText(dir + "/" + name));
  model.set_hf_source(std::move(source));
}

}  // namespace seqmesh
