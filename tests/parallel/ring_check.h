// The ring-attention check shared by the in-process and MPI tests: random q, k, v and dout for
// one sequence, single-rank attention of the whole sequence as the reference, and per ring
// position: gather its zigzag rows, run ring attention forward and backward over a link, and
// compare out, lse, dq, dk, dv with the reference's rows: the largest difference over 1e-5 of the
// largest value of the whole reference tensor. (The whole tensor's scale, not the local rows':
// a position holding only the first token has dq ~ 0 up to rounding, and relative to itself that
// rounding would read as a large error.)
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "parallel/ring_attention.h"
#include "runtime/backend.h"
#include "tests/runtime/test_util.h"

namespace seqmesh::testing {

class RingCheck {
 public:
  RingCheck(int64_t seq_len, uint32_t seed)
      : s_(seq_len),
        q_(RandomVector(s_ * kQw, seed)),
        k_(RandomVector(s_ * kKw, seed + 1)),
        v_(RandomVector(s_ * kKw, seed + 2)),
        dout_(RandomVector(s_ * kQw, seed + 3)),
        out_(s_ * kQw),
        lse_(kDims.heads * s_),
        dq_(s_ * kQw, 0.f),
        dk_(s_ * kKw, 0.f),
        dv_(s_ * kKw, 0.f) {
    const std::vector<int32_t> cu = {0, static_cast<int32_t>(s_)};
    const auto segs = SegmentsFromCuSeqlens(cu.data(), 2, s_);
    AttentionIo io{{q_.data(), kQw},   {k_.data(), kKw}, {v_.data(), kKw},
                   {out_.data(), kQw}, lse_.data(),      s_};
    backend_->AttentionForward(kDims, segs, io, Scale());
    backend_->AttentionBackward(kDims, segs, io, {dout_.data(), kQw}, {dq_.data(), kQw},
                                {dk_.data(), kKw}, {dv_.data(), kKw}, Scale());
  }

  // Ring position `position` of `ring` (world ranks in ring order), exchanging through `link`.
  void RunAndCheck(int position, const std::vector<int>& ring, RingLink& link,
                   const std::string& where) const {
    const ZigzagLayout layout(s_, static_cast<int>(ring.size()));
    const int64_t rows = layout.LocalTokens(position), ld = std::max<int64_t>(rows, 1);
    auto gather = [&](const std::vector<float>& full, int64_t w) {
      std::vector<float> x(ld * w);
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(&x[r * w], &full[layout.GlobalIndex(position, r) * w], w * sizeof(float));
      return x;
    };
    auto q = gather(q_, kQw), k = gather(k_, kKw), v = gather(v_, kKw), dout = gather(dout_, kQw);
    std::vector<float> out(ld * kQw), lse(kDims.heads * ld), dq(ld * kQw, 0.f), dk(ld * kKw, 0.f),
        dv(ld * kKw, 0.f);
    RingAttention ra(kDims, layout, position, ring, link);
    ra.Forward(*backend_, {q.data(), kQw}, {k.data(), kKw}, {v.data(), kKw}, {out.data(), kQw},
               lse.data(), ld);
    ra.Backward(*backend_, {q.data(), kQw}, {k.data(), kKw}, {v.data(), kKw}, {out.data(), kQw},
                lse.data(), ld, {dout.data(), kQw}, {dq.data(), kQw}, {dk.data(), kKw},
                {dv.data(), kKw});
    std::vector<float> ref_lse(kDims.heads * ld);
    for (int64_t r = 0; r < rows; ++r)
      for (int h = 0; h < kDims.heads; ++h)
        ref_lse[h * ld + r] = lse_[h * s_ + layout.GlobalIndex(position, r)];
    EXPECT_LT(Error(out, gather(out_, kQw), rows * kQw, out_), 1e-5) << where << " out";
    EXPECT_LT(Error(lse, ref_lse, lse.size(), lse_), 1e-5) << where << " lse";
    EXPECT_LT(Error(dq, gather(dq_, kQw), rows * kQw, dq_), 1e-5) << where << " dq";
    EXPECT_LT(Error(dk, gather(dk_, kKw), rows * kKw, dk_), 1e-5) << where << " dk";
    EXPECT_LT(Error(dv, gather(dv_, kKw), rows * kKw, dv_), 1e-5) << where << " dv";
  }

 private:
  std::shared_ptr<Backend> backend_ = MakeBackend(Device::kCpu, ExecutionContext{2});
  static constexpr AttentionDims kDims{4, 2, 8};
  static constexpr int64_t kQw = 32, kKw = 16;
  static float Scale() { return 1.0f / std::sqrt(8.0f); }
  // max |got - want| over the first n values, relative to max |whole|.
  static double Error(const std::vector<float>& got, const std::vector<float>& want, size_t n,
                      const std::vector<float>& whole) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; ++i) diff = std::max(diff, std::fabs(double{got[i]} - want[i]));
    for (float x : whole) scale = std::max(scale, std::fabs(double{x}));
    return scale == 0 ? diff : diff / scale;
  }

  int64_t s_;
  std::vector<float> q_, k_, v_, dout_, out_, lse_, dq_, dk_, dv_;
};

}  // namespace seqmesh::testing
