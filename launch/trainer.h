// The single-process trainer, a world of one rank on the one step path (StepPlanner + HdpStep):
// a run directory, a dataset, the model, ZeRO-1 AdamW over one rank with clipping and the
// schedule, checkpoints in the job layout (resume bit for bit, and across world sizes), console
// and JSONL metrics, validation, and a clean stop on SIGINT/SIGTERM (a checkpoint, then exit 0).
#pragma once

#include <iosfwd>
#include <string>

#include "runtime/run_config.h"

namespace seqmesh::launch {

struct TrainerOptions {
  bool resume = false;     // continue from the newest checkpoint in the run directory
  bool overwrite = false;  // a fresh run in a used directory: move the earlier run aside
  std::string init_from;   // a Hugging Face directory to start from (its config.json wins)
};

// Runs the whole training run; returns the process exit status.
int Train(RunConfig config, const TrainerOptions& options, std::ostream& out);

}  // namespace seqmesh::launch
