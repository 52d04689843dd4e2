// The workers' parts of a distributed checkpoint (docs/COORDINATOR.md). In the step directory:
//   config.json, model.safetensors       rank 0: the parameters (equal on every rank after
//                                        GradSync's all-gather), Hugging Face layout
//   optimizer-rank-RRRRR.safetensors     every rank: its AdamW moments as pieces of the
//                                        parameter tensors, "m.<param>@<offset>" and
//                                        "v.<param>@<offset>", with the optimizer step and the
//                                        rank count in the metadata
// Pieces, not shards: a shard's extent depends on the rank count, a piece names the tensor and
// offset it holds, so a checkpoint written by N ranks loads on any number of ranks. The
// coordinator writes coordinator.json and the manifest once every rank's part is in.
//
// Neither direction holds all of a rank's moments in memory (the store may keep them on SSD or
// in pinned memory and hand them out a sub-group at a time): a part is laid out from the pieces'
// extents and filled as the store visits them; loading maps the parts and copies each sub-group
// from the pieces that cover it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "parallel/grad_sync.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/model.h"
#include "runtime/safetensors.h"

namespace seqmesh {

// One rank's optimizer part, written a (sub-)piece at a time: the tensors "m.<param>@<offset>"
// and "v.<param>@<offset>" of each piece, in the order of `pieces`, laid out at construction.
class OptimizerPartWriter {
 public:
  OptimizerPartWriter(const std::string& path, const std::vector<Tensor>& params,
                      const std::vector<MomentPiece>& pieces,
                      const std::map<std::string, std::string>& metadata);
  // The moments of elements [offset, offset + length) of parameter `tensor`, which must lie in
  // one piece (ForEachMomentPiece's calls, in any order).
  void Write(size_t tensor, int64_t offset, const float* m, const float* v, int64_t length);
  // Every element of every piece must have been written; errors name the tensor.
  void Commit() { writer_.Commit(); }

 private:
  std::vector<std::string> param_names_;
  std::vector<MomentPiece> pieces_;  // piece k is the part's tensors 2k (m) and 2k + 1 (v)
  std::vector<size_t> by_start_;     // piece indices sorted by (tensor, offset)
  SafetensorsWriter writer_;
};

// Writes this rank's files into `dir` (created if needed), each atomically; returns their names
// relative to `dir`. Rank 0 writes the Hugging Face directory (SaveHfModel: the weights in
// `dtype`, the config and tokenizer files of the model's source).
std::vector<std::string> WriteCheckpointPart(const std::string& dir, int rank, int world_size,
                                             const Model& model, const GradSync& sync,
                                             ExportDType dtype);

// Loads the parameters and this rank's moments from every optimizer part `dir`'s manifest lists.
// Every element of every parameter must be covered by exactly one piece of m and one of v, and
// all parts must agree on the optimizer step; errors name the file, the piece and the element.
void LoadCheckpointParts(const std::string& dir, Model& model, GradSync& sync);

// "optimizer-rank-00003.safetensors"
std::string OptimizerPartName(int rank);

}  // namespace seqmesh
