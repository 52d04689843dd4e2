#include "runtime/kv_cache.h"

#include "runtime/check.h"
#include "runtime/model.h"

namespace seqmesh {

KvCache::KvCache(const ModelConfig& config, int64_t capacity)
    : capacity_(capacity), width_(config.kv_heads * config.head_dim()) {
  config.Validate();
  SM_CHECK(capacity >= 1) << "the KV cache needs a capacity of at least 1 position, got "
                          << capacity;
  std::vector<Tensor*> planned;
  for (int64_t l = 0; l < config.layers; ++l) {
    const std::string p = "layer" + std::to_string(l) + ".";
    planned.push_back(arena_.Add(p + "k", DType::kF32, {capacity, width_}));
    planned.push_back(arena_.Add(p + "v", DType::kF32, {capacity, width_}));
  }
  arena_.Allocate();
  for (size_t i = 0; i < planned.size(); i += 2) {
    k_.push_back(*planned[i]);
    v_.push_back(*planned[i + 1]);
  }
}

void KvCache::Advance(int64_t n) {
  SM_CHECK(n >= 0 && length_ + n <= capacity_)
      << "the KV cache holds " << capacity_ << " positions; " << length_ << " are filled and " << n
      << " more do not fit";
  length_ += n;
}

}  // namespace seqmesh
