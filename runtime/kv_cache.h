// KvCache: the keys and values of every position decoded so far, per layer, for incremental
// decoding (Model::Decode). Planned once from the config and a capacity in positions (prompt +
// new tokens): one arena carved into 2 x layers views,
//
//   k[l], v[l]  (capacity, kv_heads * head_dim)   row p = position p, after RoPE (k)
//
// Rows [0, length()) are filled; Model::Decode appends rows [length(), length() + n) for every
// layer and then advances length() by n. Grouped-query attention reads kv head h / (heads /
// kv_heads) of these rows, as the training kernels do (runtime/attention.h).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/tensor.h"

namespace seqmesh {

struct ModelConfig;

class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t capacity);
  KvCache(KvCache&&) = default;

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  int64_t layers() const { return static_cast<int64_t>(k_.size()); }
  int64_t width() const { return width_; }  // kv_heads * head_dim
  size_t bytes() const { return arena_.bytes(); }
  const Tensor& k(int64_t layer) const { return k_[layer]; }
  const Tensor& v(int64_t layer) const { return v_[layer]; }

  // Forgets every position (a new sequence); the memory stays.
  void Clear() { length_ = 0; }
  // Marks n more rows as filled (Model::Decode, after every layer wrote them).
  void Advance(int64_t n);

 private:
  Arena arena_{"kv_cache"};
  std::vector<Tensor> k_, v_;
  int64_t capacity_ = 0, width_ = 0, length_ = 0;
};

}  // namespace seqmesh
