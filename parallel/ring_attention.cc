#include "parallel/ring_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/backend.h"
#include "runtime/check.h"
#include "runtime/trace.h"

namespace seqmesh {
namespace {

// One tag per kind of exchange; a kind is completed before it is posted again.
constexpr int kTagForwardKv = 1;
constexpr int kTagBackwardKv = 2;
constexpr int kTagBackwardGrad = 3;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

}  // namespace

ZigzagLayout::ZigzagLayout(int64_t seq_len, int ring_size)
    : seq_len_(seq_len), ring_size_(ring_size) {
  SM_CHECK(ring_size >= 1) << "a ring needs at least one rank, got " << ring_size;
  SM_CHECK(seq_len >= 1) << "ring attention needs a sequence of at least one token, got "
                         << seq_len;
}

int64_t ZigzagLayout::ChunkBegin(int c) const {
  const int64_t chunks = 2 * ring_size_, base = seq_len_ / chunks, extra = seq_len_ % chunks;
  return c * base + std::min<int64_t>(c, extra);
}

int64_t ZigzagLayout::LocalTokens(int position) const {
  const int a = LocalChunk(position, 0), b = LocalChunk(position, 1);
  return ChunkEnd(a) - ChunkBegin(a) + ChunkEnd(b) - ChunkBegin(b);
}

int64_t ZigzagLayout::MaxLocalTokens() const {
  int64_t m = 0;
  for (int i = 0; i < ring_size_; ++i) m = std::max(m, LocalTokens(i));
  return m;
}

int64_t ZigzagLayout::GlobalIndex(int position, int64_t local_row) const {
  const int a = LocalChunk(position, 0), b = LocalChunk(position, 1);
  const int64_t len_a = ChunkEnd(a) - ChunkBegin(a);
  SM_CHECK(local_row >= 0 && local_row < LocalTokens(position))
      << "local row " << local_row << " outside ring position " << position << "'s "
      << LocalTokens(position) << " rows";
  return local_row < len_a ? ChunkBegin(a) + local_row : ChunkBegin(b) + local_row - len_a;
}

RingAttention::RingAttention(const AttentionDims& dims, const ZigzagLayout& layout, int position,
                             std::vector<int> ring, RingLink& link)
    : dims_(dims), layout_(layout), position_(position), ring_(std::move(ring)), link_(link) {
  dims_.Validate();
  SM_CHECK(static_cast<int>(ring_.size()) == layout_.ring_size())
      << "the ring lists " << ring_.size() << " ranks but the layout is for "
      << layout_.ring_size();
  SM_CHECK(position >= 0 && position < layout_.ring_size())
      << "ring position " << position << " outside a ring of " << layout_.ring_size();
  scale_ = 1.0f / std::sqrt(static_cast<float>(dims_.head_dim));
  rows_ = layout_.LocalTokens(position_);
  max_rows_ = layout_.MaxLocalTokens();
  const int64_t block = max_rows_ * 2 * dims_.kv_heads * dims_.head_dim;
  for (auto& b : block_) b.assign(block, 0.0f);
  for (auto& g : grad_) g.assign(block, 0.0f);
  grad_in_.assign(block, 0.0f);
  part_out_.assign(max_rows_ * dims_.heads * dims_.head_dim, 0.0f);
  part_lse_.assign(dims_.heads * max_rows_, 0.0f);
}

std::vector<AttentionSegment> RingAttention::PairSegments(int source) const {
  std::vector<AttentionSegment> segments;
  int64_t q_begin = 0;
  for (int wq = 0; wq < 2; ++wq) {
    const int cq = layout_.LocalChunk(position_, wq);
    const int64_t q_len = layout_.ChunkEnd(cq) - layout_.ChunkBegin(cq);
    int64_t k_begin = 0;
    for (int wk = 0; wk < 2; ++wk) {
      const int ck = layout_.LocalChunk(source, wk);
      const int64_t k_len = layout_.ChunkEnd(ck) - layout_.ChunkBegin(ck);
      // Keep the pair unless every key comes after every query.
      if (q_len > 0 && k_len > 0 && layout_.ChunkBegin(ck) < layout_.ChunkEnd(cq))
        segments.push_back(
            {q_begin, q_len, k_begin, k_len, layout_.ChunkBegin(cq), layout_.ChunkBegin(ck)});
      k_begin += k_len;
    }
    q_begin += q_len;
  }
  return segments;
}

namespace {

// Rows of k and v side by side in one contiguous buffer, [k | v] per row, for sending.
void PackKv(StridedRows k, StridedRows v, int64_t rows, int64_t kw, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(out + r * 2 * kw, k.data + r * k.ld, kw * sizeof(float));
    std::memcpy(out + r * 2 * kw + kw, v.data + r * v.ld, kw * sizeof(float));
  }
}

}  // namespace

void RingAttention::Forward(Backend& backend, StridedRows q, StridedRows k, StridedRows v,
                            StridedRows out, float* lse, int64_t lse_ld) {
  const int d_ring = layout_.ring_size();
  const int64_t d = dims_.head_dim, qw = dims_.heads * d, kw = dims_.kv_heads * d;
  for (int64_t r = 0; r < rows_; ++r)
    std::fill(out.data + r * out.ld, out.data + r * out.ld + qw, 0.0f);
  for (int h = 0; h < dims_.heads; ++h)
    std::fill(lse + h * lse_ld, lse + h * lse_ld + rows_, kNegInf);
  PackKv(k, v, rows_, kw, block_[0].data());
  int cur = 0;
  for (int t = 0; t < d_ring; ++t) {
    const int source = (position_ - t + d_ring) % d_ring;
    const trace::Scope ring_step("ring forward pass", "ring",
                                 {trace::Int("pass", t), trace::Int("source", source)});
    if (t + 1 < d_ring) {
      const int incoming = (source - 1 + d_ring) % d_ring;
      link_.Post(kTagForwardKv, block_[cur].data(), layout_.LocalTokens(source) * 2 * kw, Next(),
                 block_[1 - cur].data(), layout_.LocalTokens(incoming) * 2 * kw, Prev());
    }
    const float* block = block_[cur].data();
    for (const AttentionSegment& seg : PairSegments(source)) {
      // One call per chunk pair: the pairs of a query chunk share its rows.
      AttentionIo io{q,
                     {const_cast<float*>(block), 2 * kw},
                     {const_cast<float*>(block) + kw, 2 * kw},
                     {part_out_.data(), qw},
                     part_lse_.data(),
                     max_rows_};
      backend.AttentionForward(dims_, std::vector<AttentionSegment>{seg}, io, scale_);
      backend.AttentionMerge(dims_, seg.q_len, {out.data + seg.q_begin * out.ld, out.ld},
                             lse + seg.q_begin, lse_ld, {part_out_.data() + seg.q_begin * qw, qw},
                             part_lse_.data() + seg.q_begin, max_rows_);
    }
    if (t + 1 < d_ring) {
      const trace::Scope wait("wait for K/V", "ring");
      link_.Complete(kTagForwardKv);
      cur = 1 - cur;
    }
  }
}

void RingAttention::Backward(Backend& backend, StridedRows q, StridedRows k, StridedRows v,
                             StridedRows out, const float* lse, int64_t lse_ld, StridedRows dout,
                             StridedRows dq, StridedRows dk, StridedRows dv) {
  const int d_ring = layout_.ring_size();
  const int64_t d = dims_.head_dim, kw = dims_.kv_heads * d;
  PackKv(k, v, rows_, kw, block_[0].data());
  int cur = 0, g = 0;
  for (int t = 0; t < d_ring; ++t) {
    const int source = (position_ - t + d_ring) % d_ring;
    const int incoming = (source - 1 + d_ring) % d_ring;
    const int64_t source_rows = layout_.LocalTokens(source);
    const trace::Scope ring_step("ring backward pass", "ring",
                                 {trace::Int("pass", t), trace::Int("source", source)});
    if (t + 1 < d_ring)
      link_.Post(kTagBackwardKv, block_[cur].data(), source_rows * 2 * kw, Next(),
                 block_[1 - cur].data(), layout_.LocalTokens(incoming) * 2 * kw, Prev());
    // This position's contribution to the block's dK/dV.
    float* grad = grad_[g].data();
    std::fill(grad, grad + source_rows * 2 * kw, 0.0f);
    const float* block = block_[cur].data();
    AttentionIo io{q,
                   {const_cast<float*>(block), 2 * kw},
                   {const_cast<float*>(block) + kw, 2 * kw},
                   out,
                   const_cast<float*>(lse),
                   lse_ld};
    for (const AttentionSegment& seg : PairSegments(source))
      backend.AttentionBackward(dims_, std::vector<AttentionSegment>{seg}, io, dout, dq,
                                {grad, 2 * kw}, {grad + kw, 2 * kw}, scale_);
    // Add what the positions before this one contributed (received during the compute).
    if (t > 0) {
      const trace::Scope wait("wait for dK/dV", "ring");
      link_.Complete(kTagBackwardGrad);
      backend.Add(grad, grad_in_.data(), source_rows * 2 * kw);
    }
    if (t + 1 < d_ring) {
      const trace::Scope wait("wait for K/V", "ring");
      link_.Complete(kTagBackwardKv);
      cur = 1 - cur;
    }
    if (d_ring > 1) {
      // Pass the sums on; what arrives is the next block's partial sums, or after the last step
      // this position's own block, complete.
      link_.Post(kTagBackwardGrad, grad, source_rows * 2 * kw, Next(), grad_in_.data(),
                 layout_.LocalTokens(incoming) * 2 * kw, Prev());
      g = 1 - g;
    }
  }
  const float* own = grad_[0].data();
  if (d_ring > 1) {
    const trace::Scope wait("wait for dK/dV", "ring");
    link_.Complete(kTagBackwardGrad);
    own = grad_in_.data();
  }
  for (int64_t r = 0; r < rows_; ++r) {
    backend.Add(dk.data + r * dk.ld, own + r * 2 * kw, kw);
    backend.Add(dv.data + r * dv.ld, own + r * 2 * kw + kw, kw);
  }
}

}  // namespace seqmesh
