#include "runtime/batch_sampler.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <numeric>

#include "runtime/check.h"

namespace seqmesh {
namespace {

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

GlobalBatchSampler::GlobalBatchSampler(std::vector<int32_t> lengths, uint64_t seed,
                                       int64_t token_budget)
    : lengths_(std::move(lengths)), seed_(seed), budget_(token_budget) {
  SM_CHECK(token_budget >= 1) << "the global batch token budget must be >= 1, got " << token_budget;
  for (size_t i = 0; i < lengths_.size(); ++i) {
    SM_CHECK(lengths_[i] >= 0) << "sequence " << i << " has negative length " << lengths_[i];
    if (lengths_[i] > 0) nonempty_.push_back(static_cast<int64_t>(i));
  }
  SM_CHECK(!nonempty_.empty()) << "the dataset has no non-empty sequence to draw";
}

const std::vector<int64_t>& GlobalBatchSampler::Permutation(uint64_t epoch) const {
  if (epoch != cached_epoch_) {
    cached_ = nonempty_;
    uint64_t state = seed_ * 0x9e3779b97f4a7c15ull ^ (epoch + 1) * 0xd1b54a32d192ed03ull;
    for (size_t i = cached_.size(); i > 1; --i) {
      const size_t j = SplitMix(state) % i;  // Fisher-Yates
      std::swap(cached_[i - 1], cached_[j]);
    }
    cached_epoch_ = epoch;
  }
  return cached_;
}

int64_t GlobalBatchSampler::NextSequence(DataCursor& cursor) const {
  while (true) {
    const std::vector<int64_t>& perm = Permutation(cursor.epoch);
    if (cursor.position < static_cast<int64_t>(perm.size())) return perm[cursor.position++];
    ++cursor.epoch;
    cursor.position = 0;
  }
}

std::vector<int64_t> GlobalBatchSampler::Next(DataCursor& cursor) const {
  std::vector<int64_t> batch;
  int64_t tokens = 0;
  while (true) {
    // Peek: a sequence that does not fit is left for the next batch.
    DataCursor peek = cursor;
    const int64_t id = NextSequence(peek);
    const int64_t len = lengths_[id];
    if (!batch.empty() && tokens + len > budget_) break;
    cursor = peek;
    batch.push_back(id);
    tokens += len;
    if (tokens >= budget_) break;
  }
  return batch;
}

BlendedBatchSampler::BlendedBatchSampler(std::vector<BlendSource> sources, uint64_t seed,
                                         int64_t token_budget)
    : budget_(token_budget) {
  SM_CHECK(!sources.empty()) << "a blend needs at least one dataset";
  double total = 0;
  for (size_t d = 0; d < sources.size(); ++d) {
    SM_CHECK(sources[d].weight > 0)
        << "blend weight " << d << " must be > 0, got " << sources[d].weight;
    total += sources[d].weight;
  }
  for (size_t d = 0; d < sources.size(); ++d) {
    weights_.push_back(sources[d].weight / total);
    // Each dataset its own permutation stream.
    samplers_.emplace_back(std::move(sources[d].lengths), seed + 1000003ull * d, token_budget);
  }
}

BlendCursor BlendedBatchSampler::Start() const {
  BlendCursor c;
  c.datasets.resize(samplers_.size());
  c.drawn.assign(samplers_.size(), 0);
  return c;
}

std::vector<BlendedId> BlendedBatchSampler::Next(BlendCursor& cursor) const {
  SM_CHECK(cursor.datasets.size() == samplers_.size() && cursor.drawn.size() == samplers_.size())
      << "the data cursor is for " << cursor.datasets.size() << " datasets, the blend has "
      << samplers_.size();
  std::vector<BlendedId> batch;
  int64_t tokens = 0;
  while (true) {
    int64_t total = 0;
    for (int64_t n : cursor.drawn) total += n;
    size_t best = 0;
    double best_deficit = -1e300;
    for (size_t d = 0; d < samplers_.size(); ++d) {
      const double deficit = weights_[d] * static_cast<double>(total + 1) - cursor.drawn[d];
      if (deficit > best_deficit) best_deficit = deficit, best = d;
    }
    DataCursor peek = cursor.datasets[best];
    const int64_t id = samplers_[best].NextSequence(peek);
    const int64_t len = samplers_[best].Length(id);
    if (!batch.empty() && tokens + len > budget_) break;
    cursor.datasets[best] = peek;
    ++cursor.drawn[best];
    batch.push_back({static_cast<int32_t>(best), id});
    tokens += len;
    if (tokens >= budget_) break;
  }
  return batch;
}

std::vector<std::pair<double, std::string>> ParseBlend(const std::string& spec) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < spec.size()) {
    while (i < spec.size() && spec[i] == ' ') ++i;
    size_t j = i;
    while (j < spec.size() && spec[j] != ' ') ++j;
    if (j > i) words.push_back(spec.substr(i, j - i));
    i = j;
  }
  SM_CHECK(!words.empty()) << "data.path is empty";
  if (words.size() == 1) return {{1.0, words[0]}};
  SM_CHECK(words.size() % 2 == 0) << "data.path '" << spec
                                  << "': a blend is pairs of a weight and a dataset prefix";
  std::vector<std::pair<double, std::string>> out;
  for (size_t k = 0; k < words.size(); k += 2) {
    char* end = nullptr;
    const double w = std::strtod(words[k].c_str(), &end);
    SM_CHECK(end && *end == '\0' && w > 0) << "data.path '" << spec << "': weight " << k / 2
                                           << " ('" << words[k] << "') must be a positive number";
    out.push_back({w, words[k + 1]});
  }
  return out;
}

PackResult PackMicroBatches(std::span<const int64_t> ids, std::span<const int32_t> lengths,
                            int64_t capacity) {
  SM_CHECK(capacity >= 1) << "micro-batch capacity must be >= 1, got " << capacity;
  SM_CHECK(ids.size() == lengths.size())
      << ids.size() << " sequence ids but " << lengths.size() << " lengths";
  PackResult result;
  std::vector<PackedPiece> pieces;
  for (size_t i = 0; i < ids.size(); ++i) {
    SM_CHECK(lengths[i] >= 0) << "sequence " << ids[i] << " has negative length " << lengths[i];
    if (lengths[i] > capacity) ++result.cut_sequences;
    for (int64_t b = 0; b < lengths[i]; b += capacity)
      pieces.push_back({ids[i], b, std::min<int64_t>(capacity, lengths[i] - b)});
  }
  // Best-fit decreasing: longest piece first, into the bin with the least room that still fits
  // it (ties: the earliest such bin). Bins are kept ordered by free room: O(n log n).
  std::stable_sort(pieces.begin(), pieces.end(),
                   [](const PackedPiece& a, const PackedPiece& b) { return a.length > b.length; });
  std::vector<std::vector<PackedPiece>> bins;
  std::multimap<int64_t, size_t> by_room;  // free tokens -> bin
  for (const PackedPiece& p : pieces) {
    auto it = by_room.lower_bound(p.length);
    size_t bin;
    int64_t room;
    if (it == by_room.end()) {
      bin = bins.size();
      bins.emplace_back();
      room = capacity;
    } else {
      bin = it->second;
      room = it->first;
      by_room.erase(it);
    }
    bins[bin].push_back(p);
    by_room.emplace(room - p.length, bin);
  }
  for (auto& bin : bins) {
    MicroBatchPlan mb;
    mb.cu_seqlens.push_back(0);
    for (const PackedPiece& p : bin) {
      mb.pieces.push_back(p);
      mb.cu_seqlens.push_back(mb.cu_seqlens.back() + static_cast<int32_t>(p.length));
    }
    result.micro_batches.push_back(std::move(mb));
  }
  return result;
}

}  // namespace seqmesh
