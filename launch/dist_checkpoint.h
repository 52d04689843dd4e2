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
#pragma once

#include <string>
#include <vector>

#include "parallel/grad_sync.h"
#include "runtime/model.h"

namespace seqmesh {

// Writes this rank's files into `dir` (created if needed), each atomically; returns their names
// relative to `dir`.
std::vector<std::string> WriteCheckpointPart(const std::string& dir, int rank, int world_size,
                                             const Model& model, const GradSync& sync);

// Loads the parameters and this rank's moments from every optimizer part `dir`'s manifest lists.
// Every element of every parameter must be covered by exactly one piece, and all parts must agree
// on the optimizer step; errors name the file and the tensor.
void LoadCheckpointParts(const std::string& dir, Model& model, GradSync& sync);

// "optimizer-rank-00003.safetensors"
std::string OptimizerPartName(int rank);

}  // namespace seqmesh
