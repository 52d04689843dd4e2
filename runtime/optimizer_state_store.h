// OptimizerStateStore: where AdamW's state lives: master weights and the two moments
// (DESIGN.md section 3, step 4). The optimizer visits the state in sub-groups of at most a given
// number of elements, so a store that keeps it on SSD or pinned host memory (offload/) can read
// sub-group i+1 and write sub-group i-1 back while i is updated (read || update || write).
//
// Protocol: Visit calls `visit` once per sub-group, in parameter order, covering every element of
// every parameter exactly once; a sub-group holds consecutive slices (a parameter may be cut
// across sub-groups) of at most `group_elems` elements in all (0: one sub-group of everything).
// During the call the slices' master, m and v are readable and writable; what `visit` writes to
// master is the parameter's new value, and the store makes it the compute parameter's value
// before Visit returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "runtime/tensor.h"

namespace seqmesh {

struct OptimizerSlice {
  size_t tensor = 0;  // index into the parameter list
  int64_t begin = 0;  // elements [begin, begin + count) of that parameter
  int64_t count = 0;
  float* master = nullptr;  // (count) master weights
  const float* grad = nullptr;
  float* m = nullptr;  // (count) first and second moments
  float* v = nullptr;
};

class OptimizerStateStore {
 public:
  using Visitor = std::function<void(std::span<const OptimizerSlice>)>;
  virtual ~OptimizerStateStore() = default;
  virtual void Visit(std::span<const Tensor> params, std::span<const Tensor> grads,
                     int64_t group_elems, const Visitor& visit) = 0;
};

// Moments in one host arena ("m.<name>", "v.<name>" per parameter, zero-initialized); the master
// weights are the f32 parameters themselves, updated in place.
class InMemoryOptimizerStateStore final : public OptimizerStateStore {
 public:
  explicit InMemoryOptimizerStateStore(std::span<const Tensor> params);
  void Visit(std::span<const Tensor> params, std::span<const Tensor> grads, int64_t group_elems,
             const Visitor& visit) override;
  Arena& moments() { return moments_; }

 private:
  Arena moments_{"adamw moments"};
  std::vector<Tensor*> m_, v_;
};

// The sub-groups Visit hands out, as slices with tensor, begin and count set (pointers null):
// consecutive, in parameter order, at most group_elems elements each (0: one sub-group).
std::vector<std::vector<OptimizerSlice>> SubGroups(std::span<const Tensor> params,
                                                   int64_t group_elems);

}  // namespace seqmesh
