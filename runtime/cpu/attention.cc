// Flash-attention forward and backward on CPU (see runtime/attention.h for the contract).
//
// Forward: one work item per (segment, query head, query block). It walks the visible key
// blocks, computing the score tile S = scale * Q K^T with sgemm, updating the running row max m
// and row sum l (online softmax), and accumulating O += P V. At the end O /= l, lse = m + log l.
//
// Backward (FlashAttention-2 order): one work item per (segment, kv head). For each key block it
// keeps dK and dV tiles, and for every query head of the group and every query block that sees
// the key block it recomputes P = exp(S - lse), then
//   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - delta),  dQ += scale dS K,  dK += scale dS^T Q
// with delta = rowsum(dO * O). An item owns its segment's dK/dV rows of its kv head and the dQ
// rows of its query heads, so items never write the same memory and results do not depend on
// which thread ran what.
#include "runtime/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/cpu/matmul.h"
#include "runtime/cpu/vec.h"

namespace seqmesh {
namespace {

constexpr int64_t kBlockQ = 128;  // query rows per tile
constexpr int64_t kBlockK = 256;  // key rows per tile

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Keys of segment `s` visible to query row i (segment-relative), clamped to [0, k_len].
int64_t VisibleKeys(const AttentionSegment& s, int64_t i, bool causal) {
  if (!causal) return s.k_len;
  return std::clamp<int64_t>(s.q_pos + i - s.k_pos + 1, 0, s.k_len);
}

// Per-thread scratch that only grows: allocated once per thread, reused by every call.
float* Scratch(int slot, size_t floats) {
  thread_local AlignedBuffer buffers[4];
  buffers[slot].Reserve(floats);
  return buffers[slot].data();
}

struct ForwardItem {
  int32_t segment, head;
  int64_t block;
  int64_t cost;
};

void ForwardBlock(const AttentionDims& dims, const AttentionSegment& s, int head, int64_t block,
                  const AttentionIo& io, float scale, bool causal) {
  const auto& vec = cpu::Vec();
  const int64_t d = dims.head_dim;
  const int group = dims.heads / dims.kv_heads;
  const int kv = head / group;
  const int64_t r0 = block * kBlockQ;
  const int64_t rows = std::min(kBlockQ, s.q_len - r0);
  const int64_t nk = VisibleKeys(s, r0 + rows - 1, causal);

  float* tile = Scratch(0, kBlockQ * kBlockK);
  float* acc = Scratch(1, kBlockQ * d);
  float* m = Scratch(2, 2 * kBlockQ);
  float* l = m + kBlockQ;
  std::fill(acc, acc + rows * d, 0.0f);
  std::fill(m, m + rows, kNegInf);
  std::fill(l, l + rows, 0.0f);

  const float* q = io.q.data + (s.q_begin + r0) * io.q.ld + head * d;
  for (int64_t c0 = 0; c0 < nk; c0 += kBlockK) {
    const int64_t cols = std::min(kBlockK, nk - c0);
    const float* k = io.k.data + (s.k_begin + c0) * io.k.ld + kv * d;
    const float* v = io.v.data + (s.k_begin + c0) * io.v.ld + kv * d;
    Gemm(false, true, rows, cols, d, scale, q, io.q.ld, k, io.k.ld, 0.0f, tile, kBlockK);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = tile + r * kBlockK;
      const int64_t allowed =
          std::min(cols, std::max<int64_t>(0, VisibleKeys(s, r0 + r, causal) - c0));
      if (allowed == 0) {
        std::fill(row, row + cols, 0.0f);
        continue;
      }
      const float m_new = std::max(m[r], vec.max(row, allowed));
      const float alpha = m[r] == kNegInf ? 0.0f : std::exp(m[r] - m_new);
      const float sum = vec.exp_shift(row, allowed, m_new);
      std::fill(row + allowed, row + cols, 0.0f);
      l[r] = l[r] * alpha + sum;
      m[r] = m_new;
      if (alpha != 1.0f) vec.scale(acc + r * d, d, alpha);
    }
    Gemm(false, false, rows, d, cols, 1.0f, tile, kBlockK, v, io.v.ld, 1.0f, acc, d);
  }

  for (int64_t r = 0; r < rows; ++r) {
    float* out = io.out.data + (s.q_begin + r0 + r) * io.out.ld + head * d;
    float* lse = io.lse + head * io.lse_ld + s.q_begin + r0 + r;
    if (l[r] == 0.0f) {
      std::fill(out, out + d, 0.0f);
      *lse = kNegInf;
      continue;
    }
    const float inv = 1.0f / l[r];
    for (int64_t c = 0; c < d; ++c) out[c] = acc[r * d + c] * inv;
    *lse = m[r] + std::log(l[r]);
  }
}

// Work of one backward item: query heads [head_begin, head_end) of one kv head's group.
struct BackwardItem {
  int32_t segment, kv_head, head_begin, head_end;
  int64_t cost;
};

// dk_seg, dv_seg point at the segment's first key row, at this kv head's columns; the item adds
// its contribution there.
void BackwardSegment(const AttentionDims& dims, const AttentionSegment& s, const BackwardItem& it,
                     const AttentionIo& io, const float* delta, int64_t delta_ld, StridedRows dout,
                     StridedRows dq, StridedRows dk_seg, StridedRows dv_seg, float scale,
                     bool causal) {
  const int kv = it.kv_head;
  const auto& vec = cpu::Vec();
  const int64_t d = dims.head_dim;
  const int64_t nk_total = VisibleKeys(s, s.q_len - 1, causal);

  float* p = Scratch(0, kBlockQ * kBlockK);
  float* dp = Scratch(1, kBlockQ * kBlockK);
  float* dk_acc = Scratch(2, 2 * kBlockK * d);
  float* dv_acc = dk_acc + kBlockK * d;

  for (int64_t c0 = 0; c0 < nk_total; c0 += kBlockK) {
    const int64_t cols = std::min(kBlockK, nk_total - c0);
    const float* k = io.k.data + (s.k_begin + c0) * io.k.ld + kv * d;
    const float* v = io.v.data + (s.k_begin + c0) * io.v.ld + kv * d;
    std::fill(dk_acc, dk_acc + 2 * kBlockK * d, 0.0f);
    // The first query row that sees key c0.
    const int64_t first = causal ? std::max<int64_t>(0, s.k_pos + c0 - s.q_pos) : 0;
    for (int h = it.head_begin; h < it.head_end; ++h) {
      for (int64_t r0 = first / kBlockQ * kBlockQ; r0 < s.q_len; r0 += kBlockQ) {
        const int64_t rows = std::min(kBlockQ, s.q_len - r0);
        const int64_t qrow = s.q_begin + r0;
        const float* q = io.q.data + qrow * io.q.ld + h * d;
        const float* o_grad = dout.data + qrow * dout.ld + h * d;
        Gemm(false, true, rows, cols, d, scale, q, io.q.ld, k, io.k.ld, 0.0f, p, kBlockK);
        for (int64_t r = 0; r < rows; ++r) {
          float* row = p + r * kBlockK;
          const int64_t allowed =
              std::min(cols, std::max<int64_t>(0, VisibleKeys(s, r0 + r, causal) - c0));
          if (allowed > 0) vec.exp_shift(row, allowed, io.lse[h * io.lse_ld + qrow + r]);
          std::fill(row + allowed, row + cols, 0.0f);
        }
        Gemm(true, false, cols, d, rows, 1.0f, p, kBlockK, o_grad, dout.ld, 1.0f, dv_acc, d);
        Gemm(false, true, rows, cols, d, 1.0f, o_grad, dout.ld, v, io.v.ld, 0.0f, dp, kBlockK);
        for (int64_t r = 0; r < rows; ++r)
          vec.softmax_grad(p + r * kBlockK, dp + r * kBlockK, cols, delta[h * delta_ld + qrow + r]);
        Gemm(false, false, rows, d, cols, scale, dp, kBlockK, k, io.k.ld, 1.0f,
             dq.data + qrow * dq.ld + h * d, dq.ld);
        Gemm(true, false, cols, d, rows, scale, dp, kBlockK, q, io.q.ld, 1.0f, dk_acc, d);
      }
    }
    for (int64_t c = 0; c < cols; ++c) {
      vec.add(dk_seg.data + (c0 + c) * dk_seg.ld, dk_acc + c * d, d);
      vec.add(dv_seg.data + (c0 + c) * dv_seg.ld, dv_acc + c * d, d);
    }
  }
}

void CheckSegments(std::span<const AttentionSegment> segments) {
  for (size_t i = 0; i < segments.size(); ++i) {
    const AttentionSegment& s = segments[i];
    SM_CHECK(s.q_begin >= 0 && s.q_len >= 0 && s.k_begin >= 0 && s.k_len >= 0)
        << "attention segment " << i << " has a negative row range";
  }
}

// delta[h][row] = dot(dO, O) over the head, for every query row of the segments.
void ComputeDelta(const AttentionDims& dims, std::span<const AttentionSegment> segments,
                  const AttentionIo& io, StridedRows dout, int64_t rows_end, float* delta,
                  const ExecutionContext& ctx) {
  const int64_t d = dims.head_dim;
  const int64_t nseg = static_cast<int64_t>(segments.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(ctx.threads)
  for (int64_t si = 0; si < nseg; ++si) {
    const AttentionSegment& s = segments[si];
    for (int64_t r = s.q_begin; r < s.q_begin + s.q_len; ++r)
      for (int h = 0; h < dims.heads; ++h)
        delta[h * rows_end + r] =
            cpu::Vec().dot(dout.data + r * dout.ld + h * d, io.out.data + r * io.out.ld + h * d, d);
  }
}

// Per-head items: sums each group's private dK/dV (items of one group are consecutive) into
// dk/dv, in head order.
void SumHeadPartials(const AttentionDims& dims, std::span<const AttentionSegment> segments,
                     const std::vector<BackwardItem>& items,
                     const std::vector<int64_t>& partial_offset, const float* partial,
                     StridedRows dk, StridedRows dv, const ExecutionContext& ctx) {
  const int64_t d = dims.head_dim;
  const int group = dims.heads / dims.kv_heads;
  const int64_t nitems = static_cast<int64_t>(items.size());
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t i = 0; i < nitems; i += group) {
    const BackwardItem& first = items[i];
    const AttentionSegment& s = segments[first.segment];
    for (int j = 0; j < group; ++j) {
      const float* pk = partial + partial_offset[i + j];
      const float* pv = pk + s.k_len * d;
      for (int64_t r = 0; r < s.k_len; ++r) {
        cpu::Vec().add(dk.data + (s.k_begin + r) * dk.ld + first.kv_head * d, pk + r * d, d);
        cpu::Vec().add(dv.data + (s.k_begin + r) * dv.ld + first.kv_head * d, pv + r * d, d);
      }
    }
  }
}

}  // namespace

void AttentionForward(const AttentionDims& dims, std::span<const AttentionSegment> segments,
                      const AttentionIo& io, float scale, bool causal,
                      const ExecutionContext& ctx) {
  dims.Validate();
  CheckSegments(segments);
  std::vector<ForwardItem> items;
  for (size_t si = 0; si < segments.size(); ++si) {
    const AttentionSegment& s = segments[si];
    for (int64_t b = 0; b < CeilDiv(s.q_len, kBlockQ); ++b) {
      const int64_t rows = std::min(kBlockQ, s.q_len - b * kBlockQ);
      const int64_t cost = rows * (VisibleKeys(s, b * kBlockQ + rows - 1, causal) + 1);
      for (int h = 0; h < dims.heads; ++h) items.push_back({static_cast<int32_t>(si), h, b, cost});
    }
  }
  // Longest first, so the dynamic schedule ends with short items (deterministic: outputs are
  // disjoint, whichever thread runs an item).
  std::stable_sort(items.begin(), items.end(),
                   [](const ForwardItem& a, const ForwardItem& b) { return a.cost > b.cost; });
  const int64_t n = static_cast<int64_t>(items.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(ctx.threads)
  for (int64_t i = 0; i < n; ++i) {
    const ForwardItem& it = items[i];
    ForwardBlock(dims, segments[it.segment], it.head, it.block, io, scale, causal);
  }
}

void AttentionBackward(const AttentionDims& dims, std::span<const AttentionSegment> segments,
                       const AttentionIo& io, StridedRows dout, StridedRows dq, StridedRows dk,
                       StridedRows dv, float scale, bool causal, const ExecutionContext& ctx) {
  dims.Validate();
  CheckSegments(segments);
  const int64_t d = dims.head_dim;
  int64_t rows_end = 0;
  for (const AttentionSegment& s : segments) rows_end = std::max(rows_end, s.q_begin + s.q_len);
  AlignedBuffer delta(static_cast<size_t>(dims.heads) * std::max<int64_t>(rows_end, 1));
  ComputeDelta(dims, segments, io, dout, rows_end, delta.data(), ctx);

  // One item per (segment, kv head) when that gives every thread work. Otherwise (one long
  // segment with fewer kv heads than threads, e.g. multi-query attention) one item per query
  // head: each adds its dK/dV into a private buffer, and the buffers of a group are summed in
  // head order afterwards, so the result is still independent of the schedule.
  // The choice depends on the shapes only, never on the thread count, so results are the same
  // on any number of threads.
  constexpr int64_t kMinItems = 8;
  const int group = dims.heads / dims.kv_heads;
  const bool per_head =
      group > 1 && static_cast<int64_t>(segments.size()) * dims.kv_heads < kMinItems;
  std::vector<BackwardItem> items;
  std::vector<int64_t> partial_offset;  // per item, into `partial` (per_head only)
  int64_t partial_size = 0;
  for (size_t si = 0; si < segments.size(); ++si) {
    const AttentionSegment& s = segments[si];
    const int64_t cost = s.q_len * (VisibleKeys(s, s.q_len - 1, causal) + 1);
    for (int g = 0; g < dims.kv_heads; ++g) {
      if (!per_head) {
        items.push_back({static_cast<int32_t>(si), g, g * group, (g + 1) * group, cost * group});
        continue;
      }
      for (int h = g * group; h < (g + 1) * group; ++h) {
        items.push_back({static_cast<int32_t>(si), g, h, h + 1, cost});
        partial_offset.push_back(partial_size);
        partial_size += 2 * s.k_len * d;
      }
    }
  }
  AlignedBuffer partial(per_head ? static_cast<size_t>(partial_size) : 0);
  std::vector<int32_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return items[a].cost > items[b].cost; });
  const int64_t n = static_cast<int64_t>(items.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(ctx.threads)
  for (int64_t i = 0; i < n; ++i) {
    const int32_t idx = order[i];
    const BackwardItem& it = items[idx];
    const AttentionSegment& s = segments[it.segment];
    StridedRows dk_seg{dk.data + s.k_begin * dk.ld + it.kv_head * d, dk.ld};
    StridedRows dv_seg{dv.data + s.k_begin * dv.ld + it.kv_head * d, dv.ld};
    if (per_head) {
      dk_seg = {partial.data() + partial_offset[idx], d};
      dv_seg = {partial.data() + partial_offset[idx] + s.k_len * d, d};
    }
    BackwardSegment(dims, s, it, io, delta.data(), rows_end, dout, dq, dk_seg, dv_seg, scale,
                    causal);
  }
  if (per_head) SumHeadPartials(dims, segments, items, partial_offset, partial.data(), dk, dv, ctx);
}

void AttentionMerge(const AttentionDims& dims, int64_t rows, StridedRows out, float* lse,
                    int64_t lse_ld, StridedRows part, const float* part_lse, int64_t part_lse_ld,
                    const ExecutionContext& ctx) {
  dims.Validate();
  const int64_t d = dims.head_dim;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t r = 0; r < rows; ++r) {
    for (int h = 0; h < dims.heads; ++h) {
      const float a = lse[h * lse_ld + r], b = part_lse[h * part_lse_ld + r];
      if (b == kNegInf) continue;
      float* o = out.data + r * out.ld + h * d;
      const float* p = part.data + r * part.ld + h * d;
      if (a == kNegInf) {
        std::copy(p, p + d, o);
        lse[h * lse_ld + r] = b;
        continue;
      }
      const float m = std::max(a, b);
      const float wa = std::exp(a - m), wb = std::exp(b - m);
      const float sum = wa + wb;
      const float ca = wa / sum, cb = wb / sum;
      for (int64_t c = 0; c < d; ++c) o[c] = o[c] * ca + p[c] * cb;
      lse[h * lse_ld + r] = m + std::log(sum);
    }
  }
}

namespace {
struct VarlenChecked {
  std::vector<AttentionSegment> segments;
  int64_t tokens;
};

VarlenChecked CheckVarlen(const AttentionDims& dims, const Tensor& q, const Tensor& k,
                          const Tensor& v, const Tensor& cu_seqlens, const Tensor& out,
                          const Tensor& lse) {
  dims.Validate();
  SM_CHECK(q.shape().ndim() == 2) << "tensor '" << q.name() << "' must be 2-D (tokens, heads*d), "
                                  << "got " << q.shape().ToString();
  const int64_t t = q.dim(0);
  const int64_t qw = static_cast<int64_t>(dims.heads) * dims.head_dim;
  const int64_t kw = static_cast<int64_t>(dims.kv_heads) * dims.head_dim;
  CheckShape(q, {t, qw});
  CheckShape(k, {t, kw});
  CheckShape(v, {t, kw});
  CheckShape(out, {t, qw});
  CheckShape(lse, {dims.heads, t});
  SM_CHECK(cu_seqlens.shape().ndim() == 1) << "cu_seqlens must be 1-D";
  return {SegmentsFromCuSeqlens(cu_seqlens.i32(), cu_seqlens.dim(0), t), t};
}
}  // namespace

void VarlenAttentionForward(const AttentionDims& dims, const Tensor& q, const Tensor& k,
                            const Tensor& v, const Tensor& cu_seqlens, const Tensor& out,
                            const Tensor& lse, const ExecutionContext& ctx) {
  VarlenChecked c = CheckVarlen(dims, q, k, v, cu_seqlens, out, lse);
  AttentionIo io{{q.f32(), q.dim(1)},     {k.f32(), k.dim(1)}, {v.f32(), v.dim(1)},
                 {out.f32(), out.dim(1)}, lse.f32(),           c.tokens};
  AttentionForward(dims, c.segments, io, 1.0f / std::sqrt(static_cast<float>(dims.head_dim)),
                   /*causal=*/true, ctx);
}

void VarlenAttentionBackward(const AttentionDims& dims, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& cu_seqlens, const Tensor& out,
                             const Tensor& lse, const Tensor& dout, const Tensor& dq,
                             const Tensor& dk, const Tensor& dv, const ExecutionContext& ctx) {
  VarlenChecked c = CheckVarlen(dims, q, k, v, cu_seqlens, out, lse);
  CheckShape(dout, {c.tokens, out.dim(1)});
  CheckShape(dq, {c.tokens, q.dim(1)});
  CheckShape(dk, {c.tokens, k.dim(1)});
  CheckShape(dv, {c.tokens, v.dim(1)});
  AttentionIo io{{q.f32(), q.dim(1)},     {k.f32(), k.dim(1)}, {v.f32(), v.dim(1)},
                 {out.f32(), out.dim(1)}, lse.f32(),           c.tokens};
  AttentionBackward(dims, c.segments, io, {dout.f32(), dout.dim(1)}, {dq.f32(), dq.dim(1)},
                    {dk.f32(), dk.dim(1)}, {dv.f32(), dv.dim(1)},
                    1.0f / std::sqrt(static_cast<float>(dims.head_dim)), /*causal=*/true, ctx);
}

}  // namespace seqmesh
