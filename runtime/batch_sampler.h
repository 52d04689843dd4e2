// Global batches by tokens, and their packing into micro-batches.
//
// GlobalBatchSampler walks a seeded permutation of the dataset's sequences, one permutation per
// epoch, so every sequence is drawn exactly once per epoch; each call takes the next sequences
// while they fit the token budget (a sequence that does not fit starts the next batch; one longer
// than the budget forms a batch of its own). The cursor (epoch, position) is the whole state:
// saving it and resuming reproduces the same batches, on any number of ranks, because every rank
// (and the coordinator) draws the same global batch.
//
// PackMicroBatches packs a global batch into micro-batches of at most C tokens (best-fit
// decreasing, deterministic). A sequence longer than C is cut into pieces of at most C tokens,
// each a document of its own; the cuts are counted so the trainer can report them. (The HDP
// planner splits such sequences over ranks instead.)
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace seqmesh {

struct DataCursor {
  uint64_t epoch = 0;
  int64_t position = 0;  // sequences of this epoch's permutation already drawn
  bool operator==(const DataCursor&) const = default;
};

class GlobalBatchSampler {
 public:
  // lengths[i]: tokens of sequence i (those of length 0 are never drawn).
  GlobalBatchSampler(std::vector<int32_t> lengths, uint64_t seed, int64_t token_budget);

  // Sequence ids of the next global batch; advances `cursor`.
  std::vector<int64_t> Next(DataCursor& cursor) const;
  // The next sequence alone; advances `cursor` (rolling over to the next epoch).
  int64_t NextSequence(DataCursor& cursor) const;
  int32_t Length(int64_t sequence) const { return lengths_[sequence]; }
  int64_t num_sequences() const { return static_cast<int64_t>(lengths_.size()); }

 private:
  // The permutation of epoch e (cached for the last epoch asked).
  const std::vector<int64_t>& Permutation(uint64_t epoch) const;

  std::vector<int32_t> lengths_;
  std::vector<int64_t> nonempty_;
  uint64_t seed_;
  int64_t budget_;
  mutable uint64_t cached_epoch_ = UINT64_MAX;
  mutable std::vector<int64_t> cached_;
};

// A weighted blend of datasets (Megatron's "0.3 pathA 0.7 pathB"). Each draw takes the next
// sequence of the dataset furthest behind its share (Megatron's greedy blending: the d maximizing
// weight_d * (drawn + 1) - drawn_d, ties to the lower index), from that dataset's own per-epoch
// permutation; batches fill the token budget as GlobalBatchSampler's do. One dataset is a blend
// of one. The cursor holds every dataset's (epoch, position) and draw count.
struct BlendCursor {
  std::vector<DataCursor> datasets;
  std::vector<int64_t> drawn;
  bool operator==(const BlendCursor&) const = default;
};

struct BlendedId {
  int32_t dataset;
  int64_t sequence;
  bool operator==(const BlendedId&) const = default;
};

struct BlendSource {
  double weight;
  std::vector<int32_t> lengths;
};

class BlendedBatchSampler {
 public:
  BlendedBatchSampler(std::vector<BlendSource> sources, uint64_t seed, int64_t token_budget);
  BlendCursor Start() const;
  std::vector<BlendedId> Next(BlendCursor& cursor) const;
  int32_t Length(const BlendedId& id) const { return samplers_[id.dataset].Length(id.sequence); }

 private:
  std::vector<GlobalBatchSampler> samplers_;
  std::vector<double> weights_;  // normalized
  int64_t budget_;
};

// "prefix" or "w1 prefix1 w2 prefix2 ...": (weight, prefix) pairs; errors name the entry.
std::vector<std::pair<double, std::string>> ParseBlend(const std::string& spec);

// A piece of a sequence in a micro-batch: tokens [begin, begin + length) of sequence `id`.
struct PackedPiece {
  int64_t id;
  int64_t begin;
  int64_t length;
};

struct MicroBatchPlan {
  std::vector<PackedPiece> pieces;  // documents in order
  std::vector<int32_t> cu_seqlens;  // pieces.size() + 1 offsets
  int64_t tokens() const { return cu_seqlens.back(); }
};

struct PackResult {
  std::vector<MicroBatchPlan> micro_batches;
  int64_t cut_sequences = 0;  // sequences longer than the capacity, cut into pieces
};

PackResult PackMicroBatches(std::span<const int64_t> ids, std::span<const int32_t> lengths,
                            int64_t capacity);

}  // namespace seqmesh
