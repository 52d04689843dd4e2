// Ring attention: causal attention for one sequence split over an ordered list of D ranks (any
// D >= 1), which form a ring for that sequence only (DESIGN.md section 3).
//
// Layout (zigzag): the sequence is cut into 2D chunks as equal as possible (the first s % 2D
// chunks are one token longer), and ring position i holds chunks i and 2D-1-i, in that order, as
// its local rows. Every position then has about the same causal work. Local row r of position i
// has the global token index (and RoPE position) ZigzagLayout::GlobalIndex(i, r).
//
// Protocol (forward): at step t = 0..D-1 position i holds the K/V block of position
// (i - t) mod D. It posts the exchange of that block (send to i+1, receive from i-1) before
// computing on it, so the transfer overlaps the compute (double buffering), attends its queries
// to the block (chunk pairs masked by global positions), and merges the partial result
// (AttentionMerge). Backward: K/V travel the same way; the dK/dV partial sums of a block travel
// one step behind (each position adds its contribution to what it received, then passes it on),
// and after D steps every block's complete dK/dV arrive back at its owner.
//
// Every position posts its exchanges in the same order with the same tags, so a ring cannot
// deadlock, and rings on disjoint rank sets proceed independently.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/attention.h"

namespace seqmesh {

class ZigzagLayout {
 public:
  ZigzagLayout(int64_t seq_len, int ring_size);
  int64_t seq_len() const { return seq_len_; }
  int ring_size() const { return ring_size_; }
  // Chunk c in [0, 2D): global tokens [ChunkBegin(c), ChunkEnd(c)).
  int64_t ChunkBegin(int c) const;
  int64_t ChunkEnd(int c) const { return ChunkBegin(c + 1); }
  // Chunks held by ring position i, in local row order: {i, 2D-1-i}.
  int LocalChunk(int position, int which) const {
    return which == 0 ? position : 2 * ring_size_ - 1 - position;
  }
  int64_t LocalTokens(int position) const;
  int64_t MaxLocalTokens() const;  // over all positions (the middle ones may hold one more)
  int64_t GlobalIndex(int position, int64_t local_row) const;

 private:
  int64_t seq_len_;
  int ring_size_;
};

// What ring attention needs of a communicator: one send to `to` and one receive from `from`,
// posted together under a tag and completed later. Implemented over Communicator for real
// ranks, and by an in-process link for tests.
class RingLink {
 public:
  virtual ~RingLink() = default;
  virtual void Post(int tag, const float* send, int64_t send_count, int to, float* recv,
                    int64_t recv_count, int from) = 0;
  virtual void Complete(int tag) = 0;
};

// One rank's side of ring attention for one sequence. `ring` lists the world ranks in ring
// order; `position` is this rank's index in it. Local tensors have LocalTokens(position) rows:
// q and out are (rows, heads*d), k and v (rows, kv_heads*d), lse (heads, lse_ld); rows may be
// strided. Scratch is sized once in the constructor.
class RingAttention : public ExternalAttention {
 public:
  RingAttention(const AttentionDims& dims, const ZigzagLayout& layout, int position,
                std::vector<int> ring, RingLink& link);

  int64_t rows() const override { return rows_; }

  void Forward(Backend& backend, StridedRows q, StridedRows k, StridedRows v, StridedRows out,
               float* lse, int64_t lse_ld) override;
  // Accumulates (+=) into dq, dk, dv.
  void Backward(Backend& backend, StridedRows q, StridedRows k, StridedRows v, StridedRows out,
                const float* lse, int64_t lse_ld, StridedRows dout, StridedRows dq, StridedRows dk,
                StridedRows dv) override;

 private:
  // Attention segments of this position's query chunks against the chunks of `source`'s block
  // (whose rows sit at 0.. in the block buffer); chunk pairs with no visible key are left out.
  std::vector<AttentionSegment> PairSegments(int source) const;
  int Next() const { return ring_[(position_ + 1) % ring_.size()]; }
  int Prev() const { return ring_[(position_ + ring_.size() - 1) % ring_.size()]; }

  AttentionDims dims_;
  ZigzagLayout layout_;
  int position_;
  std::vector<int> ring_;
  RingLink& link_;
  float scale_;
  int64_t rows_;                 // this position's local rows
  int64_t max_rows_;             // the largest block in the ring
  std::vector<float> block_[2];  // [k | v] (forward) or [k | v] rows of a travelling block
  std::vector<float> grad_[2];   // [dk | dv] partial sums travelling one step behind
  std::vector<float> grad_in_;   // the partial sums received from the previous position
  std::vector<float> part_out_, part_lse_;
};

}  // namespace seqmesh
