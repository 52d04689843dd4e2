#include "launch/dist_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <tuple>

#include "runtime/check.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/lora_checkpoint.h"
#include "runtime/manifest.h"
#include "runtime/safetensors.h"

namespace seqmesh {
namespace fs = std::filesystem;

std::string OptimizerPartName(int rank) {
  char name[64];
  std::snprintf(name, sizeof(name), "optimizer-rank-%05d.safetensors", rank);
  return name;
}

namespace {

std::vector<SafetensorsTensorSpec> PartLayout(const std::vector<Tensor>& params,
                                              const std::vector<MomentPiece>& pieces) {
  std::vector<SafetensorsTensorSpec> specs;
  for (const MomentPiece& p : pieces) {
    const std::string suffix = params.at(p.tensor).name() + "@" + std::to_string(p.offset);
    specs.push_back({"m." + suffix, "F32", {p.length}});
    specs.push_back({"v." + suffix, "F32", {p.length}});
  }
  return specs;
}

}  // namespace

OptimizerPartWriter::OptimizerPartWriter(const std::string& path, const std::vector<Tensor>& params,
                                         const std::vector<MomentPiece>& pieces,
                                         const std::map<std::string, std::string>& metadata)
    : pieces_(pieces), writer_(path, PartLayout(params, pieces), metadata) {
  for (const Tensor& p : params) param_names_.push_back(p.name());
  for (size_t k = 0; k < pieces_.size(); ++k) by_start_.push_back(k);
  std::sort(by_start_.begin(), by_start_.end(), [&](size_t a, size_t b) {
    return std::tie(pieces_[a].tensor, pieces_[a].offset) <
           std::tie(pieces_[b].tensor, pieces_[b].offset);
  });
}

void OptimizerPartWriter::Write(size_t tensor, int64_t offset, const float* m, const float* v,
                                int64_t length) {
  // The piece holding `offset`: the last one that starts at or before it.
  auto it = std::upper_bound(by_start_.begin(), by_start_.end(), std::tie(tensor, offset),
                             [&](const auto& key, size_t k) {
                               return key < std::tie(pieces_[k].tensor, pieces_[k].offset);
                             });
  const MomentPiece* p = it == by_start_.begin() ? nullptr : &pieces_[*std::prev(it)];
  SM_CHECK(p && p->tensor == tensor && offset + length <= p->offset + p->length && length >= 0)
      << "'" << writer_.path() << "': moments of elements [" << offset << ", " << offset + length
      << ") of " << (tensor < param_names_.size() ? param_names_[tensor] : "?")
      << " lie in no single piece of this rank";
  const size_t k = static_cast<size_t>(p - pieces_.data());
  const uint64_t at = static_cast<uint64_t>(offset - p->offset) * sizeof(float);
  const size_t bytes = static_cast<size_t>(length) * sizeof(float);
  writer_.Write(2 * k, at, m, bytes);
  writer_.Write(2 * k + 1, at, v, bytes);
}

std::vector<std::string> WriteCheckpointPart(const std::string& dir, int rank, int world_size,
                                             const Model& model, const GradSync& sync,
                                             ExportDType dtype) {
  fs::create_directories(dir);
  std::vector<std::string> files;
  // A LoRA run's weights are its adapters (PEFT's files); the frozen base stays where it was.
  if (rank == 0)
    files = model.lora() ? SaveLoraAdapter(model, dir) : SaveHfModel(model, dir, dtype);
  const std::string name = OptimizerPartName(rank);
  OptimizerPartWriter part(dir + "/" + name, model.trainable(), sync.moment_pieces(),
                           {{"optimizer_step", std::to_string(sync.step())},
                            {"rank", std::to_string(rank)},
                            {"world_size", std::to_string(world_size)}});
  // The store's pointers are valid only during each call: every (sub-)piece goes to disk at once.
  sync.ForEachMomentPiece([&](size_t t, int64_t offset, const float* m, const float* v,
                              int64_t len) { part.Write(t, offset, m, v, len); });
  part.Commit();
  files.push_back(name);
  return files;
}

namespace {

// One piece of m or v in a mapped optimizer part.
struct PartPiece {
  int64_t offset = 0, length = 0;  // elements of the parameter tensor
  const uint8_t* data = nullptr;   // length floats (F32, not necessarily aligned)
  size_t file = 0, entry = 0;      // which part, which of its tensors
};

// Every optimizer part the manifest lists, mapped while the moments load (the pieces point into
// them), and their pieces per parameter (m and v apart).
struct OptimizerParts {
  std::vector<SafetensorsFile> files;
  int64_t step = -1;
  std::vector<std::vector<PartPiece>> m, v;  // per parameter, sorted by offset once checked
  std::string Where(const PartPiece& p) const {
    return "'" + files[p.file].path() + "': piece '" + files[p.file].entries()[p.entry].name + "'";
  }
};

// The parts the manifest lists, never a leftover of an attempt that did not commit this step.
std::vector<std::string> ListedParts(const std::string& dir) {
  const std::regex part_name(R"(optimizer-rank-\d{5}\.safetensors)");
  std::vector<std::string> parts;
  SM_CHECK(fs::is_directory(dir)) << "checkpoint '" << dir << "' is not a directory";
  for (const std::string& name : ManifestFileNames(dir))
    if (std::regex_match(name, part_name)) parts.push_back(dir + "/" + name);
  SM_CHECK(!parts.empty()) << "checkpoint '" << dir
                           << "' lists no optimizer-rank-*.safetensors in its manifest";
  return parts;
}

void ReadStep(const SafetensorsFile& f, int64_t& step) {
  auto it = f.metadata().find("optimizer_step");
  SM_CHECK(it != f.metadata().end())
      << "'" << f.path() << "' has no optimizer_step in its metadata";
  const int64_t s = std::stoll(it->second);
  SM_CHECK(step < 0 || s == step) << "'" << f.path() << "' is at optimizer step " << s
                                  << ", other parts at " << step;
  step = s;
}

// Adds part `file`'s pieces to `parts`, each checked to be a 1-D F32 run inside its parameter.
void IndexPieces(size_t file, const std::vector<Tensor>& params,
                 const std::map<std::string, size_t>& index, OptimizerParts& parts) {
  static const std::regex piece_name(R"(([mv])\.(.+)@(\d+))");
  const SafetensorsFile& f = parts.files[file];
  const std::string& path = f.path();
  for (size_t e = 0; e < f.entries().size(); ++e) {
    const SafetensorsEntry& entry = f.entries()[e];
    std::smatch match;
    SM_CHECK(std::regex_match(entry.name, match, piece_name))
        << "'" << path << "': tensor '" << entry.name << "' is not m.<param>@<offset> or v.";
    const auto t_it = index.find(match[2].str());
    SM_CHECK(t_it != index.end()) << "'" << path << "': tensor '" << entry.name
                                  << "' names no parameter of the model";
    const size_t t = t_it->second;
    const int64_t offset = std::stoll(match[3].str());
    SM_CHECK(entry.dtype == "F32" && entry.shape.size() == 1)
        << "'" << path << "': tensor '" << entry.name << "' must be 1-D F32";
    const int64_t len = entry.shape[0];
    SM_CHECK(offset >= 0 && offset + len <= params[t].numel())
        << "'" << path << "': piece '" << entry.name << "' of " << len << " elements runs past the "
        << params[t].numel() << " elements of " << params[t].name();
    if (len == 0) continue;  // holds nothing
    (match[1].str() == "m" ? parts.m : parts.v)[t].push_back({offset, len, entry.data, file, e});
  }
}

// Sorts one moment's pieces of parameter `param` and checks that they tile it: no element in two
// pieces, none in no piece.
void CheckTiling(const std::string& dir, const Tensor& param, const std::string& moment,
                 const OptimizerParts& parts, std::vector<PartPiece>& pieces) {
  std::sort(pieces.begin(), pieces.end(), [](const PartPiece& a, const PartPiece& b) {
    return std::tie(a.offset, a.file, a.entry) < std::tie(b.offset, b.file, b.entry);
  });
  int64_t covered = 0, end = 0;
  const PartPiece* last = nullptr;  // the piece that reaches furthest so far
  const PartPiece* before_hole = nullptr;
  int64_t hole = -1, hole_end = -1;
  for (const PartPiece& p : pieces) {
    SM_CHECK(p.offset >= end) << parts.Where(p) << " overlaps another part at element " << p.offset
                              << " (" << parts.Where(*last) << ")";
    if (p.offset > end && hole < 0) {
      hole = end;
      hole_end = p.offset;
      before_hole = last;
    }
    covered += p.length;
    end = p.offset + p.length;
    last = &p;
  }
  if (hole < 0 && end < param.numel()) {
    hole = end;
    hole_end = param.numel();
    before_hole = last;
  }
  SM_CHECK(covered == param.numel())
      << "checkpoint '" << dir << "': the optimizer parts cover " << covered << " of the "
      << param.numel() << " elements of " << param.name() << ": elements [" << hole << ", "
      << hole_end << ") of " << moment << "." << param.name() << " are in no piece"
      << (before_hole ? " (they follow " + parts.Where(*before_hole) + ")" : "");
}

OptimizerParts OpenParts(const std::string& dir, const std::vector<Tensor>& params) {
  std::map<std::string, size_t> index;
  for (size_t t = 0; t < params.size(); ++t) index[params[t].name()] = t;
  OptimizerParts parts;
  parts.m.resize(params.size());
  parts.v.resize(params.size());
  for (const std::string& path : ListedParts(dir)) {
    parts.files.push_back(SafetensorsFile::Open(path));
    ReadStep(parts.files.back(), parts.step);
    IndexPieces(parts.files.size() - 1, params, index, parts);
  }
  for (size_t t = 0; t < params.size(); ++t) {
    CheckTiling(dir, params[t], "m", parts, parts.m[t]);
    CheckTiling(dir, params[t], "v", parts, parts.v[t]);
  }
  return parts;
}

// Copies elements [offset, offset + length) of a parameter's moment from the pieces that tile it
// (a range may span several: the writer may have had more ranks than the reader).
void CopyRange(const std::vector<PartPiece>& pieces, int64_t offset, int64_t length, float* out) {
  auto it = std::upper_bound(pieces.begin(), pieces.end(), offset,
                             [](int64_t o, const PartPiece& p) { return o < p.offset; });
  SM_CHECK(it != pieces.begin()) << "no piece holds element " << offset;
  for (--it; length > 0; ++it) {
    SM_CHECK(it != pieces.end()) << "no piece holds element " << offset;
    const int64_t skip = offset - it->offset;
    SM_CHECK(skip < it->length) << "no piece holds element " << offset;
    const int64_t n = std::min(length, it->length - skip);
    std::memcpy(out, it->data + skip * sizeof(float), n * sizeof(float));
    out += n;
    offset += n;
    length -= n;
  }
}

}  // namespace

void LoadCheckpointParts(const std::string& dir, Model& model, GradSync& sync) {
  if (model.lora() || std::filesystem::exists(dir + "/adapter_config.json")) {
    // The base first (the directory the run started from, or the seed's weights as they are),
    // then the adapters over it.
    const std::string base = CheckLoraAdapter(model, dir);
    if (!base.empty()) {
      SM_CHECK(std::filesystem::exists(base + "/config.json"))
          << "'" << dir << "' adapts the base model '" << base << "', which is gone; restore it "
          << "there (adapter_config.json's base_model_name_or_path) to resume";
      LoadHfWeights(model, base);
    }
    LoadLoraAdapter(model, dir);
  } else {
    LoadHfWeights(model, dir);
  }
  const OptimizerParts parts = OpenParts(dir, model.trainable());
  sync.LoadMoments(
      [&](size_t t, int64_t offset, int64_t length, float* m, float* v) {
        CopyRange(parts.m.at(t), offset, length, m);
        CopyRange(parts.v.at(t), offset, length, v);
      },
      parts.step);
}

}  // namespace seqmesh
