#include "launch/training_data.h"

#include <cmath>
#include <utility>

#include "runtime/check.h"

namespace seqmesh::launch {

TrainingData OpenTrainingData(const RunConfig& config) {
  SM_CHECK(!config.data.path.empty())
      << "data.path is not set (a dataset prefix from seqmesh prep)";
  std::vector<std::string> prefixes;
  std::vector<IndexedDataset> datasets;
  std::vector<BlendSource> sources;
  std::vector<BlendedId> validation;
  std::vector<std::optional<DatasetCard>> cards;
  int64_t train_sequences = 0, tokens_total = 0;
  for (const auto& [weight, prefix] : ParseBlend(config.data.path)) {
    prefixes.push_back(prefix);
    datasets.push_back(IndexedDataset::Open(prefix));
    cards.push_back(ReadDatasetCard(prefix));
    const IndexedDataset& ds = datasets.back();
    const int64_t n = ds.num_sequences();
    const int64_t n_val = static_cast<int64_t>(std::llround(n * config.data.validation_fraction));
    SM_CHECK(n - n_val >= 1) << "'" << prefix << "': no training sequences left after holding out "
                             << n_val;
    sources.push_back(
        {weight, std::vector<int32_t>(ds.lengths().begin(), ds.lengths().end() - n_val)});
    for (int64_t i = n - n_val; i < n; ++i)
      validation.push_back({static_cast<int32_t>(datasets.size() - 1), i});
    train_sequences += n - n_val;
    tokens_total += ds.num_tokens();
  }
  BlendedBatchSampler sampler(std::move(sources), static_cast<uint64_t>(config.training.seed),
                              config.training.global_batch_tokens);
  return TrainingData{std::move(prefixes), std::move(datasets), std::move(validation),
                      train_sequences,     tokens_total,        std::move(sampler),
                      std::move(cards)};
}

}  // namespace seqmesh::launch
