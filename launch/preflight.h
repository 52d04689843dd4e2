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
  std::string init_from;       // --init-from DIR: its vocabulary must be the datasets'
};

void PreflightJob(const RunConfig& config, const TrainingData& data, const PreflightOptions& o,
                  std::ostream& log);

// About how many bytes one rank holds: parameters, gradients, the gradient sync's flat buffers
// and ZeRO-1 shard of the moments (or, offloaded, the pinned arena), and the activations of one
// micro-batch.
double EstimatedRankBytes(const RunConfig& config, int ranks);
// The same without the layers' activations (EstimatedActivationBytes).
double EstimatedStateBytes(const RunConfig& config, int ranks);
// What this machine has for the job: the smaller of MemAvailable and the memory cgroup's room
// (limit - usage + inactive file cache); <= 0 when unknown.
double AvailableBytes();

// A model started from `init_from` (a Hugging Face directory of model.vocab = `model_vocab`) must
// have the vocabulary the datasets' ids came from. Where a dataset records its tokenizer
// (PREFIX.dataset.json), the directory's tokenizer file must be the same file, or, when the
// directory ships none, the tokenizer's vocab must fit the model's, padded by less than 1,024 ids
// (a byte dataset under a 32,000-id model is refused). Datasets without PREFIX.dataset.json are
// not checked here (their ids still are).
void CheckInitFromTokenizer(const TrainingData& data, const std::string& init_from,
                            int64_t model_vocab);

// The rule of CheckInitFromTokenizer for one dataset `prefix` with its card and a model directory
// given by `flag` ("--init-from", "--model"): `seqmesh eval` refuses data this way too.
void CheckModelTokenizer(const std::string& prefix, const DatasetCard& card,
                         const std::string& model_dir, const std::string& flag,
                         int64_t model_vocab);

}  // namespace seqmesh::launch
