// The single-process trainer: a run directory, a dataset, the model, AdamW with clipping and the
// schedule, checkpoints (resume bit for bit), console and JSONL metrics, validation, and a clean
// stop on SIGINT/SIGTERM (a checkpoint, then exit 0). The distributed worker (issue 6) reuses
// its pieces per rank.
#pragma once

#include <iosfwd>
#include <string>

#include "runtime/run_config.h"

namespace seqmesh::launch {

struct TrainerOptions {
  bool resume = false;    // continue from the newest checkpoint in the run directory
  std::string init_from;  // a Hugging Face directory to start from (its config.json wins)
};

// Runs the whole training run; returns the process exit status.
int Train(RunConfig config, const TrainerOptions& options, std::ostream& out);

}  // namespace seqmesh::launch
