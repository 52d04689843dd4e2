// Flash-style attention kernels on CPU (runtime/attention.h has the layout and the contract):
// the raw kernels CpuBackend calls, plus checked entry points over dense tensors. Each runs on
// ctx.threads threads (one when no context is given); results do not depend on it.
#pragma once

#include <cstdint>
#include <span>

#include "runtime/attention.h"
#include "runtime/execution_context.h"
#include "runtime/tensor.h"

namespace seqmesh {

// out and lse of every query row in the segments. Rows that see no key get out = 0, lse = -inf.
void AttentionForward(const AttentionDims& dims, std::span<const AttentionSegment> segments,
                      const AttentionIo& io, float scale, bool causal = true,
                      const ExecutionContext& ctx = {});

// Accumulates (+=) into dq, dk, dv the gradients for upstream gradient dout (strided like out),
// using out and lse from the forward. Segments must not share query rows or key rows.
void AttentionBackward(const AttentionDims& dims, std::span<const AttentionSegment> segments,
                       const AttentionIo& io, StridedRows dout, StridedRows dq, StridedRows dk,
                       StridedRows dv, float scale, bool causal = true,
                       const ExecutionContext& ctx = {});

// Merges a partial result into a running one: (part, part_lse) is attention of the same query
// rows over other keys. Per row and head, lse' = logaddexp(lse, part_lse) and
// out' = out * exp(lse - lse') + part * exp(part_lse - lse'). Rows [0, rows) of out and part;
// lse and part_lse are (heads, *_ld). A -inf lse (no keys seen yet) takes the other side as is.
// Ring attention merges the result of each ring step this way.
void AttentionMerge(const AttentionDims& dims, int64_t rows, StridedRows out, float* lse,
                    int64_t lse_ld, StridedRows part, const float* part_lse, int64_t part_lse_ld,
                    const ExecutionContext& ctx = {});

// Checked entry points over packed documents with dense tensors: q, out (T, heads*d);
// k, v (T, kv_heads*d); cu_seqlens i32 (docs + 1); lse (heads, T).
void VarlenAttentionForward(const AttentionDims& dims, const Tensor& q, const Tensor& k,
                            const Tensor& v, const Tensor& cu_seqlens, const Tensor& out,
                            const Tensor& lse, const ExecutionContext& ctx = {});
void VarlenAttentionBackward(const AttentionDims& dims, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& cu_seqlens, const Tensor& out,
                             const Tensor& lse, const Tensor& dout, const Tensor& dq,
                             const Tensor& dk, const Tensor& dv, const ExecutionContext& ctx = {});

}  // namespace seqmesh
