#include "runtime/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "runtime/files.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/json.h"
#include "runtime/manifest.h"
#include "runtime/safetensors.h"

namespace seqmesh {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFiles[] = {"config.json", "model.safetensors", "train_state.safetensors"};

int64_t ParseU64(const std::map<std::string, std::string>& meta, const std::string& key,
                 const std::string& file) {
  auto it = meta.find(key);
  SM_CHECK(it != meta.end()) << "'" << file << "' lacks metadata \"" << key << "\"";
  return Json::Parse(it->second, "'" + file + "' metadata " + key).AsInt(key);
}

std::string CursorJson(const BlendCursor& c) { return CursorToJson(c).Dump(); }

BlendCursor ParseCursor(const std::map<std::string, std::string>& meta, const std::string& file) {
  auto it = meta.find("cursor");
  SM_CHECK(it != meta.end()) << "'" << file << "' lacks metadata \"cursor\"";
  const std::string what = "'" + file + "' cursor";
  return CursorFromJson(Json::Parse(it->second, what), what);
}

}  // namespace

uint64_t Fnv1a64(const void* data, size_t bytes) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

CheckpointManager::CheckpointManager(std::string dir, int keep)
    : dir_(std::move(dir)), keep_(keep) {
  SM_CHECK(keep >= 1) << "checkpoint.keep must be >= 1, got " << keep;
}

std::string CheckpointManager::Save(const Model& model, AdamW& adamw, const TrainState& state) {
  const std::string out = StepDir(dir_, static_cast<uint64_t>(state.step));
  fs::create_directories(out);
  fs::remove(out + "/" + kManifestName);  // an earlier, interrupted save of this step
  SaveHfModel(model, out);
  std::vector<Tensor> moments(adamw.moments().tensors().begin(), adamw.moments().tensors().end());
  WriteSafetensors(out + "/train_state.safetensors", moments, false,
                   {{"step", std::to_string(state.step)},
                    {"optimizer_step", std::to_string(adamw.step())},
                    {"cursor", CursorJson(state.cursor)},
                    {"rng", std::to_string(state.rng)}});
  std::vector<ManifestFile> files;
  for (const char* name : kFiles) files.push_back(DigestFile(out, name));
  WriteManifest(out, static_cast<uint64_t>(state.step), files);

  std::vector<std::string> all = List();
  for (size_t i = 0; i + keep_ < all.size(); ++i) fs::remove_all(all[i]);
  return out;
}

std::vector<std::string> CheckpointManager::List() const {
  std::vector<std::string> out;
  for (const auto& [step, dir] : CommittedStepDirs(dir_)) out.push_back(dir);
  std::reverse(out.begin(), out.end());  // oldest first
  return out;
}

std::optional<std::string> CheckpointManager::Latest() const {
  std::vector<std::string> all = List();
  if (all.empty()) return std::nullopt;
  return all.back();
}

TrainState CheckpointManager::Load(const std::string& checkpoint, Model& model, AdamW& adamw) {
  VerifyManifest(checkpoint);
  LoadHfWeights(model, checkpoint);
  const std::string state_path = checkpoint + "/train_state.safetensors";
  SafetensorsFile st = SafetensorsFile::Open(state_path);
  for (const Tensor& t : adamw.moments().tensors()) st.ReadInto(t.name(), t);
  TrainState s;
  s.step = ParseU64(st.metadata(), "step", state_path);
  adamw.set_step(ParseU64(st.metadata(), "optimizer_step", state_path));
  s.cursor = ParseCursor(st.metadata(), state_path);
  // The RNG state is a full u64: parse it without the i64 limit.
  auto rng = st.metadata().find("rng");
  SM_CHECK(rng != st.metadata().end()) << "'" << state_path << "' lacks metadata \"rng\"";
  s.rng = std::strtoull(rng->second.c_str(), nullptr, 10);
  return s;
}

Json CursorToJson(const BlendCursor& c) {
  Json epoch = Json::Array(), position = Json::Array(), drawn = Json::Array();
  for (size_t d = 0; d < c.datasets.size(); ++d) {
    epoch.Push(Json::Integer(static_cast<int64_t>(c.datasets[d].epoch)));
    position.Push(Json::Integer(c.datasets[d].position));
    drawn.Push(Json::Integer(c.drawn[d]));
  }
  Json j = Json::Object();
  j.Set("epoch", std::move(epoch));
  j.Set("position", std::move(position));
  j.Set("drawn", std::move(drawn));
  return j;
}

BlendCursor CursorFromJson(const Json& j, const std::string& what) {
  const Json* e = j.Find("epoch");
  const Json* p = j.Find("position");
  const Json* n = j.Find("drawn");
  SM_CHECK(e && p && n) << what << " needs epoch, position and drawn";
  const auto& ea = e->AsArray(what + ".epoch");
  const auto& pa = p->AsArray(what + ".position");
  const auto& na = n->AsArray(what + ".drawn");
  SM_CHECK(ea.size() == pa.size() && pa.size() == na.size())
      << what << ": epoch, position and drawn differ in length";
  BlendCursor c;
  for (size_t d = 0; d < ea.size(); ++d) {
    const int64_t epoch = ea[d].AsInt(what + ".epoch");
    SM_CHECK(epoch >= 0 && pa[d].AsInt(what) >= 0 && na[d].AsInt(what) >= 0)
        << what << ": negative entry for dataset " << d;
    c.datasets.push_back({static_cast<uint64_t>(epoch), pa[d].AsInt(what + ".position")});
    c.drawn.push_back(na[d].AsInt(what + ".drawn"));
  }
  return c;
}

}  // namespace seqmesh
