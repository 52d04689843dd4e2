// ActivationStore: where the saved inputs of checkpointed layers live between forward and
// backward (DESIGN.md section 3, step 3). A checkpointed layer keeps only its input; backward
// recomputes the rest from it. A store that moves inputs off the compute device (host or SSD,
// by the plan's offload ratio: offload/) copies out on Save and back ahead of backward.
//
// Protocol, per micro-batch (checkpointed layers only):
//   Forward:  Save(l, input) right after layer l's forward, layers in increasing order. From then
//             on the model does not read `input` until it fetches it back, so the store may copy
//             it and the model's buffer may be reused.
//   Backward: Prefetch(l) for the highest checkpointed layer when backward starts, then per
//             checkpointed layer, highest first: Fetch(l) before its recompute, Prefetch(next
//             lower checkpointed layer), the layer's backward, Release(l).
// Fetch returns a (T, hidden) tensor with the saved values, valid until Release(l).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/tensor.h"

namespace seqmesh {

class ActivationStore {
 public:
  virtual ~ActivationStore() = default;
  virtual void Save(int64_t layer, const Tensor& input) = 0;
  // A hint: Fetch(layer) comes next.
  virtual void Prefetch(int64_t layer) = 0;
  virtual Tensor Fetch(int64_t layer) = 0;
  virtual void Release(int64_t layer) = 0;
};

// Keeps the saved tensor itself (no copy): valid because the model leaves a checkpointed layer's
// input buffer untouched until that layer's backward (its residual-stream slot is written only by
// the previous layer's forward).
class InMemoryActivationStore final : public ActivationStore {
 public:
  explicit InMemoryActivationStore(int64_t layers);
  void Save(int64_t layer, const Tensor& input) override;
  void Prefetch(int64_t layer) override;
  Tensor Fetch(int64_t layer) override;
  void Release(int64_t layer) override;

 private:
  std::vector<Tensor> saved_;
  std::vector<bool> held_;
};

}  // namespace seqmesh
