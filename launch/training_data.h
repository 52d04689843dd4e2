// The training data of a run, opened one way for every process that draws global batches: the
// single-process trainer, the coordinator (which needs only the lengths) and the workers. All of
// them build the same BlendedBatchSampler from the same config (data.path, validation_fraction,
// training.seed, training.global_batch_tokens), so a cursor names the same global batch in each.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/batch_sampler.h"
#include "runtime/dataset_card.h"
#include "runtime/indexed_dataset.h"
#include "runtime/run_config.h"

namespace seqmesh::launch {

struct TrainingData {
  std::vector<std::string> prefixes;     // one per dataset of the blend, in blend order
  std::vector<IndexedDataset> datasets;  // mapped; tokens are read on demand
  // Held out for validation: the last validation_fraction of each dataset's sequences.
  std::vector<BlendedId> validation;
  int64_t train_sequences = 0;
  int64_t tokens_total = 0;  // every token of every dataset, held-out ones included
  // Draws global batches from the training sequences only.
  BlendedBatchSampler sampler;
  // Each dataset's PREFIX.dataset.json (its tokenizer), where prep wrote one.
  std::vector<std::optional<DatasetCard>> cards;
  // Each dataset's loss mask (PREFIX.loss_mask, from prep --chat), where its card names one.
  std::vector<std::optional<IndexedDataset>> masks;
  // The next-token targets each sequence trains, by dataset, for the masked datasets only.
  std::vector<std::vector<int32_t>> trained_targets;

  // The targets sequence `id` trains: length - 1, less the masked ones.
  uint64_t TrainedTargets(const BlendedId& id) const;
  bool has_masks() const;
  // Appends the loss mask of tokens [begin, begin + count) of a sequence (1s where the dataset
  // has no mask).
  void ReadTrained(int dataset, int64_t sequence, int64_t begin, int64_t count,
                   std::vector<uint8_t>& out) const;
};

// Opens every dataset of config.data.path, holds out validation sequences and builds the sampler.
// Errors name the dataset prefix (a missing file, or no training sequence left).
TrainingData OpenTrainingData(const RunConfig& config);

}  // namespace seqmesh::launch
