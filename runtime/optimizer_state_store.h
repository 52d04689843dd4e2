// OptimizerStateStore: where AdamW's state lives: master weights and the two moments
// (DESIGN.md section 3, step 4). The optimizer visits the state in sub-groups of at most a given
// number of elements, so a store that keeps it on SSD or pinned host memory (offload/) can read
// sub-group i+1 and write sub-group i-1 back while i is updated (read || update || write).
//
// Protocol: Visit calls `visit` once per sub-group, in parameter order, covering every element of
// every parameter exactly once; a sub-group holds consecutive slices (a parameter may be cut
// across sub-groups) of at most sub_group_elems() elements in all (0: one sub-group of
// everything). The sub-group size belongs to the store: an SSD store lays its extents out by it.
// What the slices hold during the call depends on the access:
//   kUpdate     master, m and v are the state, readable and writable (grad is the gradient); what
//               `visit` writes to master is the parameter's new value, and the store makes it the
//               compute parameter's value (params[tensor]) before Visit returns;
//   kRead       master, m and v are the state, read only (a checkpoint saves them); grad is null;
//   kOverwrite  `visit` writes all of m and v (a checkpoint loads them); master already holds the
//               compute parameters, which become the master weights; grad is null.
// The pointers are valid only during the call (an SSD store hands out its staging buffers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
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

enum class StateAccess { kUpdate, kRead, kOverwrite };

class OptimizerStateStore {
 public:
  using Visitor = std::function<void(std::span<const OptimizerSlice>)>;
  virtual ~OptimizerStateStore() = default;
  // grads: the gradients for kUpdate (matching params); may be empty otherwise.
  virtual void Visit(std::span<const Tensor> params, std::span<const Tensor> grads,
                     StateAccess access, const Visitor& visit) = 0;
  virtual int64_t sub_group_elems() const = 0;

  // Gradient hand-off (a world of one, DESIGN.md section 7): a store that can keep the gradients
  // itself (on SSD) takes them as each group of parameters finishes its backward, so that their
  // memory can be given back until the next step. After HoldGradients(), every step hands in
  // every parameter's gradient through GradientsReady before Visit(kUpdate), and the update's
  // slices point at the gradients the store holds (the `grads` given to Visit are not read).
  virtual bool CanHoldGradients() const { return false; }
  virtual void HoldGradients();
  // Parameters [first, last) have their final gradients in grads (same indices as params); the
  // store has copied them when it returns. Only after HoldGradients().
  virtual void GradientsReady(std::span<const Tensor> grads, size_t first, size_t last);
};

// Makes the store of a list of parameters (what an optimizer or gradient sync is built with, so
// the caller chooses where the state lives).
using OptimizerStateFactory =
    std::function<std::unique_ptr<OptimizerStateStore>(std::span<const Tensor> params)>;

// Checks a Visit's arguments against the state's shapes (f32, matching; an update has
// gradients), naming the tensor; returns the gradients the access uses (none but for kUpdate).
std::span<const Tensor> CheckVisit(std::span<const Tensor> params, std::span<const Tensor> grads,
                                   StateAccess access, std::span<const Shape> shapes);

// Moments in one host arena ("m.<name>", "v.<name>" per parameter, zero-initialized); the master
// weights are the f32 parameters themselves, updated in place.
class InMemoryOptimizerStateStore final : public OptimizerStateStore {
 public:
  explicit InMemoryOptimizerStateStore(std::span<const Tensor> params, int64_t sub_group_elems = 0);
  void Visit(std::span<const Tensor> params, std::span<const Tensor> grads, StateAccess access,
             const Visitor& visit) override;
  int64_t sub_group_elems() const override { return sub_group_elems_; }
  Arena& moments() { return moments_; }

 private:
  Arena moments_{"adamw moments"};
  std::vector<Tensor*> m_, v_;
  std::vector<Shape> shapes_;
  int64_t sub_group_elems_ = 0;
};

// The sub-groups Visit hands out, as slices with tensor, begin and count set (pointers null):
// consecutive, in parameter order, at most group_elems elements each (0: one sub-group).
std::vector<std::vector<OptimizerSlice>> SubGroups(std::span<const Tensor> params,
                                                   int64_t group_elems);

}  // namespace seqmesh
