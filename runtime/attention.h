// Attention's shared vocabulary: the layout of q, k, v and out, segments, and the injection point
// for attention computed elsewhere (ring attention). The kernels are a Backend's
// (runtime/backend.h; CPU: runtime/cpu/attention.h).
//
// Flash-style causal attention with grouped-query heads over packed variable-length documents,
// tiled over (query block x key block): the s x s score matrix is never materialized; forward
// saves only the output and the per-row log-sum-exp (lse), and backward recomputes the scores
// tile by tile, so memory grows linearly with sequence length.
//
// Layout: row r of q holds all query heads, head h in columns [h*d, (h+1)*d); row r of k and v
// holds the kv heads likewise. Query head h reads kv head h / (heads / kv_heads) (Hugging Face
// repeat_kv). Rows may be strided (ld >= width), so q, k and v can be column slices of one fused
// qkv projection output. lse is (heads, lse_ld), natural log, of the scaled scores.
// Rows that see no key get out = 0, lse = -inf. Backward accumulates (+=) into dq, dk, dv, using
// out and lse from the forward; segments must not share query rows or key rows.
//
// Merge (ring attention merges the result of each ring step this way): (part, part_lse) is
// attention of the same query rows over other keys. Per row and head,
// lse' = logaddexp(lse, part_lse) and out' = out * exp(lse - lse') + part * exp(part_lse - lse');
// a -inf lse (no keys seen yet) takes the other side as is.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/tensor.h"

namespace seqmesh {

class Backend;

struct AttentionDims {
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  void Validate() const;  // heads, kv_heads, head_dim >= 1; kv_heads divides heads
};

// Query rows [q_begin, q_begin + q_len) attend key rows [k_begin, k_begin + k_len). Their token
// positions are q_pos + i and k_pos + j; with causal masking key j is visible to query i iff
// k_pos + j <= q_pos + i. A packed document is one segment with q == k ranges; a ring-attention
// step pairs a local query chunk with a remote key chunk.
struct AttentionSegment {
  int64_t q_begin = 0, q_len = 0;
  int64_t k_begin = 0, k_len = 0;
  int64_t q_pos = 0, k_pos = 0;
};

struct StridedRows {
  float* data = nullptr;
  int64_t ld = 0;  // floats between consecutive rows
};

struct AttentionIo {
  StridedRows q, k, v, out;
  float* lse = nullptr;  // (heads, lse_ld)
  int64_t lse_ld = 0;
};

// Segments for packed documents: cu_seqlens (docs + 1) with cu[0] = 0, non-decreasing, ending at
// total_tokens. Errors name the offending entry.
std::vector<AttentionSegment> SegmentsFromCuSeqlens(const int32_t* cu_seqlens, int64_t count,
                                                    int64_t total_tokens);

// Attention computed elsewhere for some rows of a micro-batch: the local part of a sequence split
// over several ranks (parallel/ring_attention implements it). The model hands it the rows'
// q, k, v (after RoPE) and output slices; it may communicate, and every rank of the split
// sequence calls it in the same order (once per layer forward, and once per layer backward, in
// reverse layer order; again in backward for checkpointed layers, which recompute forward). It
// computes with the model's backend, so it runs where the model runs.
class ExternalAttention {
 public:
  virtual ~ExternalAttention() = default;
  // The number of local rows it expects (checked against the split document's length).
  virtual int64_t rows() const = 0;
  virtual void Forward(Backend& backend, StridedRows q, StridedRows k, StridedRows v,
                       StridedRows out, float* lse, int64_t lse_ld) = 0;
  // Accumulates (+=) into dq, dk, dv.
  virtual void Backward(Backend& backend, StridedRows q, StridedRows k, StridedRows v,
                        StridedRows out, const float* lse, int64_t lse_ld, StridedRows dout,
                        StridedRows dq, StridedRows dk, StridedRows dv) = 0;
};

}  // namespace seqmesh
