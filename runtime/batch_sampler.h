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
