#include "runtime/attention.h"

namespace seqmesh {

void AttentionDims::Validate() const {
  SM_CHECK(heads >= 1 && kv_heads >= 1 && head_dim >= 1)
      << "attention needs heads, kv_heads and head_dim >= 1 (got " << heads << ", " << kv_heads
      << ", " << head_dim << ")";
  SM_CHECK(heads % kv_heads == 0) << "kv_heads (" << kv_heads << ") must divide heads (" << heads
                                  << ")";
}

std::vector<AttentionSegment> SegmentsFromCuSeqlens(const int32_t* cu, int64_t count,
                                                    int64_t total_tokens) {
  SM_CHECK(count >= 2) << "cu_seqlens needs at least 2 entries (one document), got " << count;
  SM_CHECK(cu[0] == 0) << "cu_seqlens must start at 0, got " << cu[0];
  std::vector<AttentionSegment> segments;
  segments.reserve(count - 1);
  for (int64_t i = 1; i < count; ++i) {
    SM_CHECK(cu[i] >= cu[i - 1]) << "cu_seqlens must be non-decreasing: cu_seqlens[" << i
                                 << "] = " << cu[i] << " < cu_seqlens[" << i - 1
                                 << "] = " << cu[i - 1];
    const int64_t len = cu[i] - cu[i - 1];
    segments.push_back({cu[i - 1], len, cu[i - 1], len, 0, 0});
  }
  SM_CHECK(cu[count - 1] == total_tokens) << "cu_seqlens ends at " << cu[count - 1]
                                          << " but the batch has " << total_tokens << " tokens";
  return segments;
}

}  // namespace seqmesh
