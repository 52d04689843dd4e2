// Checks a job must pass before any process starts (issue 13, item 5: these failed after three
// processes had started, each printing the same error): ranks against the machine's cores, the
// longest sequence against what the world's rings can hold, token ids against the vocabulary,
// and the memory the ranks need against what the machine has. Errors name the fix; a warning
// goes to `log`.
#pragma once

#include <iosfwd>

#include "launch/training_data.h"
#include "runtime/run_config.h"

namespace seqmesh::launch {

struct PreflightOptions {
  int ranks = 1;
  bool oversubscribe = false;  // --oversubscribe: more than 4 ranks per core allowed
  bool local = true;           // every rank on this machine (cores and memory are checked)
};

void PreflightJob(const RunConfig& config, const TrainingData& data, const PreflightOptions& o,
                  std::ostream& log);

// About how many bytes one rank holds: parameters, gradients, the gradient sync's flat buffers
// and ZeRO-1 shard of the moments (or, offloaded, the pinned arena), and the activations of one
// micro-batch.
double EstimatedRankBytes(const RunConfig& config, int ranks);

}  // namespace seqmesh::launch
