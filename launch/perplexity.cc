#include "launch/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "launch/hf_model.h"
#include "launch/preflight.h"
#include "runtime/check.h"
#include "runtime/dataset_card.h"
#include "runtime/indexed_dataset.h"
#include "runtime/layers.h"

namespace seqmesh::launch {

Json EvalResult::ToJson() const {
  Json j = Json::Object();
  j.Set("documents", Json::Integer(documents));
  j.Set("tokens", Json::Integer(predicted));
  j.Set("max_length", Json::Integer(max_length));
  j.Set("loss", Json::Number(mean_loss));
  j.Set("perplexity", Json::Number(perplexity));
  j.Set("tokens_per_s", Json::Number(tokens_per_s));
  return j;
}

PerplexityMeter::PerplexityMeter(Model& model)
    : model_(model), capacity_(model.options().max_tokens) {}

void PerplexityMeter::Add(std::span<const int32_t> doc) {
  const int64_t n = static_cast<int64_t>(doc.size());
  ++documents_;
  for (int64_t begin = 0; begin < n; begin += capacity_) {
    const int64_t end = std::min(n, begin + capacity_);
    // A lone last token predicts nothing.
    if (end == n && end - begin == 1) break;
    if (static_cast<int64_t>(tokens_buf_.size()) + (end - begin) > capacity_) Flush();
    const std::span<const int32_t> w = doc.subspan(begin, end - begin);
    NextTokenTargets(w, end < n ? doc[end] : kIgnoreIndex, window_targets_);
    tokens_buf_.insert(tokens_buf_.end(), w.begin(), w.end());
    targets_buf_.insert(targets_buf_.end(), window_targets_.begin(), window_targets_.end());
    cu_.push_back(static_cast<int32_t>(tokens_buf_.size()));
    pending_predicted_ += (end - begin) - (end == n ? 1 : 0);
  }
}

void PerplexityMeter::Flush() {
  if (tokens_buf_.empty()) return;
  Batch b;
  b.tokens = tokens_buf_.data();
  b.targets = targets_buf_.data();
  b.cu_seqlens = cu_.data();
  b.num_docs = static_cast<int64_t>(cu_.size()) - 1;
  b.num_tokens = static_cast<int64_t>(tokens_buf_.size());
  // normalizer 1: Forward returns the sum of the token losses (in float, added here in double).
  loss_sum_ += model_.Forward(b, 1.0f);
  predicted_ += pending_predicted_;
  tokens_ += b.num_tokens;
  pending_predicted_ = 0;
  tokens_buf_.clear();
  targets_buf_.clear();
  cu_.assign(1, 0);
}

EvalResult EvaluatePerplexity(const EvalRequest& r) {
  SM_CHECK(r.max_length >= 0) << "--max-length must be >= 1 (or 0: the longest document), got "
                              << r.max_length;
  const HfModelDir m = ReadHfModelDir(r.model_dir);
  SM_CHECK(std::filesystem::exists(r.data + ".idx"))
      << "the dataset '" << r.data << "' does not exist (no " << r.data
      << ".idx); pass the PREFIX that seqmesh prep --output wrote";
  const IndexedDataset ds = IndexedDataset::Open(r.data);
  if (const std::optional<DatasetCard> card = ReadDatasetCard(r.data))
    CheckModelTokenizer(r.data, *card, r.model_dir, "--model", m.config.vocab);
  int64_t longest = 1;
  for (int64_t s = 0; s < ds.num_sequences(); ++s)
    longest = std::max<int64_t>(longest, ds.Length(s));
  EvalResult out;
  out.max_length = r.max_length;
  if (out.max_length == 0) {
    constexpr int64_t kDefaultWindow = 4096;
    out.max_length = std::min(longest, m.max_positions > 0 ? m.max_positions : kDefaultWindow);
  }
  SM_CHECK(m.max_positions == 0 || out.max_length <= m.max_positions)
      << "--max-length " << out.max_length
      << " is beyond the model's max_position_embeddings = " << m.max_positions;
  Model model = LoadHfModel(m, out.max_length, r.threads);
  PerplexityMeter meter(model);
  std::vector<int32_t> doc;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < ds.num_sequences(); ++s) {
    doc.clear();
    ds.Read(s, doc);
    for (int32_t id : doc)
      SM_CHECK(id >= 0 && id < m.config.vocab)
          << "dataset '" << r.data << "' sequence " << s << " holds token id " << id
          << ", outside the model's vocab_size " << m.config.vocab
          << ": prepare the data with the model's tokenizer";
    meter.Add(doc);
  }
  meter.Flush();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  SM_CHECK(meter.predicted() > 0) << "dataset '" << r.data
                                  << "' has no document of two or more tokens: nothing to predict";
  out.documents = meter.documents();
  out.predicted = meter.predicted();
  out.loss_sum = meter.loss_sum();
  out.mean_loss = out.loss_sum / static_cast<double>(out.predicted);
  out.perplexity = std::exp(out.mean_loss);
  if (seconds > 0) out.tokens_per_s = static_cast<double>(meter.tokens()) / seconds;
  return out;
}

}  // namespace seqmesh::launch
