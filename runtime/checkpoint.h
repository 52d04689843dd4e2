// Checkpoints of a training run (one process now; the layout is per rank-set ready).
//
//   <dir>/step-00000042/
//     config.json, model.safetensors     Hugging Face layout (readable by HF tools)
//     train_state.safetensors            AdamW moments ("m.<name>", "v.<name>"), and in its
//                                        metadata: step, optimizer step, data cursor, RNG state
//     manifest.json                      the complete set: every file with size and FNV-1a 64
//
// Every file is written atomically (temporary file, fsync, rename); the manifest is written last,
// so a checkpoint without one is incomplete and ignored. After a new manifest lands, the oldest
// checkpoints beyond `keep` are removed. Loading verifies sizes and checksums first: a truncated
// or corrupt checkpoint is an error naming the file, and older checkpoints stay usable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/batch_sampler.h"
#include "runtime/json.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"

namespace seqmesh {

struct TrainState {
  int64_t step = 0;    // steps completed
  BlendCursor cursor;  // where the next global batch starts (every dataset of the blend)
  uint64_t rng = 0;    // the run's random state
};

class CheckpointManager {
 public:
  CheckpointManager(std::string dir, int keep);

  // Writes step `state.step`; returns its directory.
  std::string Save(const Model& model, AdamW& adamw, const TrainState& state);
  // The newest complete checkpoint (one with a manifest), if any.
  std::optional<std::string> Latest() const;
  // All complete checkpoints, oldest first.
  std::vector<std::string> List() const;
  // Verifies `checkpoint` against its manifest, then loads weights, moments and state.
  static TrainState Load(const std::string& checkpoint, Model& model, AdamW& adamw);

 private:
  std::string dir_;
  int keep_;
};

// The data cursor as JSON, {"epoch": [...], "position": [...], "drawn": [...]} (one entry per
// dataset of the blend), and back; errors name `what`.
Json CursorToJson(const BlendCursor& cursor);
BlendCursor CursorFromJson(const Json& json, const std::string& what);

// FNV-1a 64 of a byte range (the manifest's checksum).
uint64_t Fnv1a64(const void* data, size_t bytes);

}  // namespace seqmesh
