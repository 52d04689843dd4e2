#include "launch/dist_checkpoint.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>

#include "runtime/check.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/manifest.h"
#include "runtime/safetensors.h"

namespace seqmesh {
namespace fs = std::filesystem;

std::string OptimizerPartName(int rank) {
  char name[64];
  std::snprintf(name, sizeof(name), "optimizer-rank-%05d.safetensors", rank);
  return name;
}

std::vector<std::string> WriteCheckpointPart(const std::string& dir, int rank, int world_size,
                                             const Model& model, const GradSync& sync) {
  fs::create_directories(dir);
  std::vector<std::string> files;
  if (rank == 0) {
    SaveHfModel(model, dir);
    files = {"config.json", "model.safetensors"};
  }
  std::vector<Tensor> pieces;
  const std::vector<Tensor>& params = model.params();
  sync.ForEachMomentPiece(
      [&](size_t t, int64_t offset, const float* m, const float* v, int64_t len) {
        const std::string suffix = params[t].name() + "@" + std::to_string(offset);
        pieces.emplace_back("m." + suffix, DType::kF32, Shape{len}, const_cast<float*>(m));
        pieces.emplace_back("v." + suffix, DType::kF32, Shape{len}, const_cast<float*>(v));
      });
  const std::string name = OptimizerPartName(rank);
  WriteSafetensors(dir + "/" + name, pieces, false,
                   {{"optimizer_step", std::to_string(sync.step())},
                    {"rank", std::to_string(rank)},
                    {"world_size", std::to_string(world_size)}});
  files.push_back(name);
  return files;
}

void LoadCheckpointParts(const std::string& dir, Model& model, GradSync& sync) {
  LoadHfWeights(model, dir);
  const std::vector<Tensor>& params = model.params();
  std::map<std::string, size_t> index;
  for (size_t t = 0; t < params.size(); ++t) index[params[t].name()] = t;
  std::vector<std::vector<float>> m(params.size()), v(params.size());
  std::vector<int64_t> covered(params.size(), 0);
  for (size_t t = 0; t < params.size(); ++t) {
    m[t].assign(params[t].numel(), 0.0f);
    v[t].assign(params[t].numel(), 0.0f);
  }
  // Overlaps are caught by marking each element once.
  std::vector<std::vector<bool>> seen(params.size());
  for (size_t t = 0; t < params.size(); ++t) seen[t].assign(params[t].numel(), false);

  const std::regex part_name(R"(optimizer-rank-\d{5}\.safetensors)");
  const std::regex piece_name(R"(([mv])\.(.+)@(\d+))");
  // The parts the manifest lists, never a leftover of an attempt that did not commit this step.
  std::vector<std::string> parts;
  SM_CHECK(fs::is_directory(dir)) << "checkpoint '" << dir << "' is not a directory";
  for (const std::string& name : ManifestFileNames(dir))
    if (std::regex_match(name, part_name)) parts.push_back(dir + "/" + name);
  SM_CHECK(!parts.empty()) << "checkpoint '" << dir
                           << "' lists no optimizer-rank-*.safetensors in its manifest";
  int64_t step = -1;
  for (const std::string& path : parts) {
    const SafetensorsFile f = SafetensorsFile::Open(path);
    auto it = f.metadata().find("optimizer_step");
    SM_CHECK(it != f.metadata().end()) << "'" << path << "' has no optimizer_step in its metadata";
    const int64_t s = std::stoll(it->second);
    SM_CHECK(step < 0 || s == step)
        << "'" << path << "' is at optimizer step " << s << ", other parts at " << step;
    step = s;
    for (const SafetensorsEntry& entry : f.entries()) {
      std::smatch match;
      SM_CHECK(std::regex_match(entry.name, match, piece_name))
          << "'" << path << "': tensor '" << entry.name << "' is not m.<param>@<offset> or v.";
      const auto t_it = index.find(match[2].str());
      SM_CHECK(t_it != index.end())
          << "'" << path << "': tensor '" << entry.name << "' names no parameter of the model";
      const size_t t = t_it->second;
      const int64_t offset = std::stoll(match[3].str());
      SM_CHECK(entry.dtype == "F32" && entry.shape.size() == 1)
          << "'" << path << "': tensor '" << entry.name << "' must be 1-D F32";
      const int64_t len = entry.shape[0];
      SM_CHECK(offset >= 0 && offset + len <= params[t].numel())
          << "'" << path << "': piece '" << entry.name << "' of " << len
          << " elements runs past the " << params[t].numel() << " elements of " << params[t].name();
      const bool is_m = match[1].str() == "m";
      std::memcpy((is_m ? m[t] : v[t]).data() + offset, entry.data, len * sizeof(float));
      if (is_m) {
        for (int64_t i = offset; i < offset + len; ++i) {
          SM_CHECK(!seen[t][i]) << "'" << path << "': piece '" << entry.name
                                << "' overlaps another part at element " << i;
          seen[t][i] = true;
        }
        covered[t] += len;
      }
    }
  }
  for (size_t t = 0; t < params.size(); ++t)
    SM_CHECK(covered[t] == params[t].numel())
        << "checkpoint '" << dir << "': the optimizer parts cover " << covered[t] << " of the "
        << params[t].numel() << " elements of " << params[t].name();
  std::vector<const float*> mp, vp;
  for (size_t t = 0; t < params.size(); ++t) {
    mp.push_back(m[t].data());
    vp.push_back(v[t].data());
  }
  sync.LoadMoments(mp, vp, step);
}

}  // namespace seqmesh
