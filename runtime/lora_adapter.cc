#include "runtime/lora_adapter.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "runtime/check.h"
#include "runtime/dtype.h"
#include "runtime/files.h"
#include "runtime/json.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"

namespace seqmesh {
namespace fs = std::filesystem;
namespace {

Json ReadJson(const std::string& path) {
  SM_CHECK(fs::exists(path)) << "'" << path << "' does not exist";
  const MappedFile f(path);
  return Json::Parse(std::string_view(reinterpret_cast<const char*>(f.data()), f.size()),
                     "'" + path + "'");
}

// The weight files of a Hugging Face directory: model.safetensors, or the index's shards.
std::vector<std::string> WeightFiles(const std::string& dir) {
  const std::string index = dir + "/model.safetensors.index.json";
  if (!fs::exists(index)) return {"model.safetensors"};
  std::set<std::string> shards;
  const Json j = ReadJson(index);
  for (const auto& [name, file] : j.Require("weight_map", "'" + index + "'").AsObject(index))
    shards.insert(file.AsString("'" + index + "' weight_map." + name));
  return {shards.begin(), shards.end()};
}

// A 2-D tensor of `f` as fp32.
std::vector<float> ReadMatrix(const SafetensorsFile& f, const SafetensorsEntry& e) {
  SM_CHECK(e.shape.size() == 2) << "'" << f.path() << "' tensor '" << e.name << "' has "
                                << e.shape.size() << " dimensions; a LoRA weight has 2";
  std::vector<float> out(e.shape[0] * e.shape[1]);
  f.ReadInto(e.name, Tensor(e.name, DType::kF32, Shape{e.shape[0], e.shape[1]}, out.data()));
  return out;
}

std::string ShapeText(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

}  // namespace

const std::vector<std::string>& LoraModules() {
  static const std::vector<std::string> modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"};
  return modules;
}

void ValidateLoraTraining(const LoraConfig& c) {
  SM_CHECK(c.rank >= 1 && c.rank <= 4096) << "lora.rank must be in [1, 4096], got " << c.rank;
  SM_CHECK(c.alpha > 0) << "lora.alpha must be > 0, got " << c.alpha;
  SM_CHECK(c.dropout >= 0 && c.dropout < 1) << "lora.dropout must be in [0, 1), got " << c.dropout;
  SM_CHECK(!c.targets.empty()) << "lora.targets is empty; list the projections to adapt, e.g. "
                               << "[\"q_proj\", \"v_proj\"]";
  const std::vector<std::string>& modules = LoraModules();
  for (size_t i = 0; i < c.targets.size(); ++i) {
    const std::string& t = c.targets[i];
    SM_CHECK(std::find(modules.begin(), modules.end(), t) != modules.end())
        << "lora.targets: \"" << t << "\" is not a projection of a Llama layer; use "
        << "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj";
    for (size_t j = 0; j < i; ++j)
      SM_CHECK(c.targets[j] != t) << "lora.targets lists \"" << t << "\" twice";
  }
}

std::string PeftTensorName(const std::string& weight_name, char which) {
  const std::string suffix = ".weight";
  std::string module = weight_name;
  if (module.size() > suffix.size() &&
      module.compare(module.size() - suffix.size(), suffix.size(), suffix) == 0)
    module.resize(module.size() - suffix.size());
  return "base_model.model." + module + ".lora_" + which + ".weight";
}

bool IsLoraTarget(const std::string& weight_name, const std::vector<std::string>& targets) {
  const std::string suffix = ".weight";
  if (weight_name.size() <= suffix.size() ||
      weight_name.compare(weight_name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  const std::string module = weight_name.substr(0, weight_name.size() - suffix.size());
  const size_t dot = module.rfind('.');
  const std::string last = dot == std::string::npos ? module : module.substr(dot + 1);
  for (const std::string& t : targets)
    if (t == last) return true;
  return false;
}

void WriteAdapterConfig(const std::string& dir, const LoraConfig& c) {
  std::vector<Json> targets;
  for (const std::string& t : c.targets) targets.push_back(Json::String(t));
  Json j = Json::Object();
  j.Set("peft_type", Json::String("LORA"));
  j.Set("task_type", Json::String("CAUSAL_LM"));
  j.Set("base_model_name_or_path", Json::String(c.base_model));
  j.Set("r", Json::Integer(c.rank));
  j.Set("lora_alpha", Json::Number(c.alpha));
  j.Set("lora_dropout", Json::Number(c.dropout));
  j.Set("target_modules", Json::Array(std::move(targets)));
  j.Set("bias", Json::String("none"));
  j.Set("fan_in_fan_out", Json::Bool(false));
  j.Set("use_rslora", Json::Bool(false));
  j.Set("use_dora", Json::Bool(false));
  j.Set("modules_to_save", Json());
  j.Set("inference_mode", Json::Bool(true));
  fs::create_directories(dir);
  const std::string text = j.Dump() + "\n";
  WriteFileAtomically(dir + "/adapter_config.json", text.data(), text.size());
}

LoraConfig ReadAdapterConfig(const std::string& dir) {
  const std::string path = dir + "/adapter_config.json";
  const Json j = ReadJson(path);
  const std::string w = "'" + path + "'";
  LoraConfig c;
  const std::string type = j.Require("peft_type", w).AsString(w + " peft_type");
  SM_CHECK(type == "LORA") << w << " peft_type is '" << type << "': only LoRA adapters merge";
  c.rank = j.Require("r", w).AsInt(w + " r");
  SM_CHECK(c.rank >= 1) << w << " r must be >= 1, got " << c.rank;
  c.alpha = j.Require("lora_alpha", w).AsDouble(w + " lora_alpha");
  if (const Json* d = j.Find("lora_dropout"); d && !d->is_null())
    c.dropout = d->AsDouble(w + " lora_dropout");
  const Json& targets = j.Require("target_modules", w);
  SM_CHECK(!targets.is_string()) << w << " target_modules is a regular expression ('"
                                 << targets.AsString("") << "'): list the module names instead";
  for (const Json& t : targets.AsArray(w + " target_modules"))
    c.targets.push_back(t.AsString(w + " target_modules"));
  if (const Json* b = j.Find("base_model_name_or_path"); b && !b->is_null())
    c.base_model = b->AsString(w + " base_model_name_or_path");
  if (const Json* b = j.Find("bias"); b && !b->is_null()) {
    SM_CHECK(b->AsString(w + " bias") == "none")
        << w << " bias is '" << b->AsString("") << "': adapters with biases are not supported";
  }
  for (const char* flag : {"use_dora", "use_rslora", "fan_in_fan_out"}) {
    if (const Json* f = j.Find(flag); f && !f->is_null()) {
      SM_CHECK(!f->AsBool(w + " " + flag)) << w << " " << flag << " is true: not supported";
    }
  }
  for (const char* key :
       {"modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern"}) {
    const Json* f = j.Find(key);
    const bool empty = !f || f->is_null() || (f->is_object() && f->AsObject(key).empty()) ||
                       (f->is_array() && f->AsArray(key).empty());
    SM_CHECK(empty) << w << " " << key << " is set: not supported (every targeted weight "
                    << "takes rank r and lora_alpha)";
  }
  return c;
}

MergeReport MergeLora(const std::string& base_dir, const std::string& adapter_dir,
                      const std::string& out_dir_in) {
  SM_CHECK(fs::weakly_canonical(base_dir) != fs::weakly_canonical(out_dir_in))
      << "the output directory is the base model's ('" << base_dir << "'): choose another";
  SM_CHECK(!fs::exists(out_dir_in) || fs::is_empty(out_dir_in))
      << "'" << out_dir_in << "' exists and is not empty: choose a new directory for the merged "
      << "model";
  // Written beside the output and renamed into place at the end: a merge that fails leaves
  // nothing behind.
  const std::string out_dir = out_dir_in + ".partial";
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      if (!dir.empty()) fs::remove_all(dir, ec);
    }
  } cleanup{out_dir};
  fs::remove_all(out_dir);
  const LoraConfig config = ReadAdapterConfig(adapter_dir);
  const SafetensorsFile adapter = SafetensorsFile::Open(adapter_dir + "/adapter_model.safetensors");
  std::set<std::string> unused;
  for (const SafetensorsEntry& e : adapter.entries()) unused.insert(e.name);
  const std::vector<std::string> weight_files = WeightFiles(base_dir);
  fs::create_directories(out_dir);
  // Every other file of the base directory (config, tokenizer, the shard index) as it is.
  const std::set<std::string> rewritten(weight_files.begin(), weight_files.end());
  for (const auto& e : fs::directory_iterator(base_dir))
    if (e.is_regular_file() && !rewritten.count(e.path().filename().string()))
      fs::copy_file(e.path(), fs::path(out_dir) / e.path().filename(),
                    fs::copy_options::overwrite_existing);
  MergeReport report;
  const float scale = static_cast<float>(config.scaling());
  for (const std::string& file : weight_files) {
    const SafetensorsFile base = SafetensorsFile::Open(base_dir + "/" + file);
    std::vector<SafetensorsTensorSpec> specs;
    for (const SafetensorsEntry& e : base.entries()) specs.push_back({e.name, e.dtype, e.shape});
    SafetensorsWriter out(out_dir + "/" + file, specs, base.metadata());
    for (size_t i = 0; i < base.entries().size(); ++i) {
      const SafetensorsEntry& e = base.entries()[i];
      const SafetensorsEntry* a = adapter.Find(PeftTensorName(e.name, 'A'));
      const SafetensorsEntry* b = adapter.Find(PeftTensorName(e.name, 'B'));
      if (!a && !b) {
        out.Write(i, 0, e.data, e.bytes);
        ++report.copied;
        continue;
      }
      SM_CHECK(a && b) << "'" << adapter.path() << "' has "
                       << (a ? PeftTensorName(e.name, 'A') : PeftTensorName(e.name, 'B'))
                       << " but not its pair";
      unused.erase(a->name);
      unused.erase(b->name);
      SM_CHECK(e.shape.size() == 2 && a->shape.size() == 2 && b->shape.size() == 2 &&
               a->shape[0] == config.rank && b->shape[1] == config.rank &&
               a->shape[1] == e.shape[1] && b->shape[0] == e.shape[0])
          << "'" << adapter.path() << "': " << a->name << " " << ShapeText(a->shape) << " and "
          << b->name << " " << ShapeText(b->shape) << " do not fit '" << e.name << "' "
          << ShapeText(e.shape) << " with r = " << config.rank;
      SM_CHECK(e.dtype == "F32" || e.dtype == "BF16")
          << "'" << base.path() << "' tensor '" << e.name << "' is " << e.dtype
          << ": merging writes F32 or BF16 weights only";
      std::vector<float> w = ReadMatrix(base, e);
      const std::vector<float> am = ReadMatrix(adapter, *a), bm = ReadMatrix(adapter, *b);
      const int64_t rows = e.shape[0], cols = e.shape[1], r = config.rank;
      std::vector<float> delta(cols);
      std::vector<uint16_t> half(e.dtype == "BF16" ? cols : 0);
      for (int64_t o = 0; o < rows; ++o) {
        std::fill(delta.begin(), delta.end(), 0.0f);
        for (int64_t k = 0; k < r; ++k) {
          const float bk = bm[o * r + k];
          for (int64_t c = 0; c < cols; ++c) delta[c] += bk * am[k * cols + c];
        }
        float* row = w.data() + o * cols;
        for (int64_t c = 0; c < cols; ++c) row[c] += scale * delta[c];
        if (e.dtype == "BF16") {
          for (int64_t c = 0; c < cols; ++c) half[c] = FloatToBf16(row[c]);
          out.Write(i, static_cast<uint64_t>(o * cols * 2), half.data(), cols * 2);
        } else {
          out.Write(i, static_cast<uint64_t>(o * cols * 4), row, cols * 4);
        }
      }
      ++report.merged;
    }
    out.Commit();
  }
  SM_CHECK(unused.empty()) << "'" << adapter.path() << "' tensor '" << *unused.begin()
                           << "' adapts no weight of '" << base_dir
                           << "' (is it the adapter of this model?)";
  if (fs::exists(out_dir_in)) fs::remove(out_dir_in);  // empty
  fs::rename(out_dir, out_dir_in);
  cleanup.dir.clear();
  return report;
}

}  // namespace seqmesh
