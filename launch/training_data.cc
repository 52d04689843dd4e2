#include "launch/training_data.h"

#include <algorithm>
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
  std::vector<std::optional<IndexedDataset>> masks;
  std::vector<std::vector<int32_t>> trained_targets;
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
    masks.emplace_back();
    trained_targets.emplace_back();
    if (cards.back() && cards.back()->loss_mask) {
      const std::string mask_prefix = LossMaskPrefix(prefix);
      masks.back().emplace(IndexedDataset::Open(mask_prefix));
      const IndexedDataset& mask = *masks.back();
      SM_CHECK(mask.lengths() == ds.lengths())
          << "'" << mask_prefix << "' does not hold one loss-mask byte per token of '" << prefix
          << "' (" << mask.num_sequences() << " sequences of " << mask.num_tokens()
          << " tokens against " << n << " of " << ds.num_tokens()
          << "): run seqmesh prep again to write both";
      std::vector<int32_t> bytes;
      for (int64_t s = 0; s < n; ++s) {
        bytes.clear();
        mask.Read(s, bytes);
        int32_t trained = 0;
        for (size_t i = 1; i < bytes.size(); ++i) trained += bytes[i] != 0;
        trained_targets.back().push_back(trained);
      }
    }
  }
  BlendedBatchSampler sampler(std::move(sources), static_cast<uint64_t>(config.training.seed),
                              config.training.global_batch_tokens);
  return TrainingData{std::move(prefixes), std::move(datasets), std::move(validation),
                      train_sequences,     tokens_total,        std::move(sampler),
                      std::move(cards),    std::move(masks),    std::move(trained_targets)};
}

bool TrainingData::has_masks() const {
  return std::any_of(masks.begin(), masks.end(), [](const auto& m) { return m.has_value(); });
}

void TrainingData::ReadTrained(int dataset, int64_t sequence, int64_t begin, int64_t count,
                               std::vector<uint8_t>& out) const {
  const std::optional<IndexedDataset>& mask = masks[dataset];
  if (!mask) return out.resize(out.size() + count, 1);
  thread_local std::vector<int32_t> bytes;
  bytes.clear();
  mask->ReadRange(sequence, begin, count, bytes);
  out.insert(out.end(), bytes.begin(), bytes.end());
}

uint64_t TrainingData::TrainedTargets(const BlendedId& id) const {
  const std::vector<int32_t>& trained = trained_targets[id.dataset];
  if (!trained.empty()) return static_cast<uint64_t>(trained[id.sequence]);
  return static_cast<uint64_t>(std::max(0, datasets[id.dataset].Length(id.sequence) - 1));
}

}  // namespace seqmesh::launch
