// ParameterStore: where the model's weights live between uses (DESIGN.md section 3, step 3).
// The model acquires a group's weights right before it computes with them and releases them
// right after, and hints which group it acquires next, so a store that keeps weights off the
// compute device (pinned host memory, SSD: offload/) can stage one group while the model runs
// on another.
//
// Protocol, per micro-batch (groups are those of ParamLayout below; L = layers):
//   Forward:   0 (embedding), 1 .. L (layers), L + 1 (final norm and lm_head; with tied
//              embeddings group 0 is acquired with it, for the lm_head).
//   Backward:  L + 1 (and 0 when tied), then L .. 1. The embedding's backward needs no weights.
//   Before each Acquire but the first of a pass, Prefetch named that group; Acquire(g) is
//   always followed by Release(g) before g is acquired again.
// What Acquire returns is valid until the matching Release and laid out as the model's arena
// lays the group out (tensors in params() order, packed tensors adjacent: q|k|v and gate|up are
// used as one fused matrix each). Gradients are not the store's: they stay in the model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "runtime/tensor.h"

namespace seqmesh {

// Where the model's tensors sit in params() (and grads()): consecutive groups whose gradients
// Backward finishes together, in params() order: the embedding, layer 0 .. layers-1, then the
// final norm with the lm_head. Gradient sync makes one bucket of each group (parallel/hdp_step.h),
// and the ParameterStore moves weights group by group.
struct ParamLayout {
  struct Group {
    size_t first = 0, last = 0;  // params [first, last)
    // The layer whose on_layer_grads_ready call finishes this group; -1: the call after the
    // layers (the embedding, and the final norm and lm_head).
    int64_t layer = -1;
  };
  std::vector<Group> groups;
  // Indices into groups in the order Backward finishes them (layers last to first, then the
  // embedding, then the final norm and lm_head): the order reductions start on every rank.
  std::vector<int> finish_order;
};

// Reads and writes of params() outside a pass (initialization, loads, checkpoint saves, the
// optimizer's update), tensor by tensor: a store that keeps weights off the device brings a
// tensor's group in before and sends it back once all of the group's tensors are done. Each
// tensor gets one `before` and then one `after` per sweep; `overwrite`: every element will be
// written (its old bytes need not be read); `changed`: the tensor's bytes changed. Null
// functions: the weights are always in the arena.
struct ParamAccess {
  std::function<void(size_t tensor, bool overwrite)> before;
  std::function<void(size_t tensor, bool changed)> after;
  explicit operator bool() const { return static_cast<bool>(before); }
};

class ParameterStore {
 public:
  virtual ~ParameterStore() = default;
  // The tensors of `group`, resident on the compute device until Release(group).
  virtual std::span<const Tensor> Acquire(int group) = 0;
  virtual void Release(int group) = 0;
  // A hint: `group` is the next one acquired.
  virtual void Prefetch(int group) = 0;
};

// The weights stay where they are (the model's parameter arena): Acquire returns views of them,
// Release and Prefetch do nothing.
class InMemoryParameterStore final : public ParameterStore {
 public:
  InMemoryParameterStore(std::vector<Tensor> params, ParamLayout layout);
  std::span<const Tensor> Acquire(int group) override;
  void Release(int group) override;
  void Prefetch(int group) override;

 private:
  std::vector<Tensor> params_;
  ParamLayout layout_;
};

}  // namespace seqmesh
