// The optimizer step: global-norm clipping, a warmup + cosine learning-rate schedule, and fused
// AdamW (one pass over p, g, m, v per element, vectorized, on the backend's threads). AdamW's
// state lives in an OptimizerStateStore (runtime/optimizer_state_store.h) and is updated
// sub-group by sub-group through it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/adamw_step.h"
#include "runtime/backend.h"
#include "runtime/optimizer_state_store.h"
#include "runtime/tensor.h"

namespace seqmesh {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;  // applied to tensors with ndim >= 2 only (not to norm weights)
  void Validate() const;
};

// lr(k) for 0-based step k: linear warmup max_lr * (k+1) / warmup for k < warmup, then cosine
// from max_lr to min_lr over the remaining total - warmup steps, min_lr after that.
struct LrSchedule {
  float max_lr = 3e-4f;
  float min_lr = 3e-5f;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  float At(int64_t step) const;
  void Validate() const;
};

// sqrt(sum of squares) over all tensors, accumulated in double in a fixed order (on a CPU
// backend with `context`; Backend::GlobalNorm is the same on any backend).
double GlobalNorm(const std::vector<Tensor>& tensors, const ExecutionContext& context = {});
// GlobalNorm in two halves, for gradients handed on as their backward finishes: the squares of
// one tensor's 65,536-element chunks, in order (appended to `out`), and the norm of the squares of
// all tensors in tensor order. Together they equal GlobalNorm bit for bit (the same chunks, the
// same kernel, the same order of the sum).
void AppendChunkSquares(const Tensor& t, std::vector<double>& out);
double NormOfSquares(const std::vector<double>& squares);
// torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); max_norm <= 0
// disables clipping (factor 1).
float ClipScale(double norm, float max_norm);

// The per-element constants of update number `step` (1-based): the same arithmetic for AdamW
// here and for the ZeRO-1 shards in parallel/grad_sync. weight_decay is the configured value;
// callers zero it for tensors with ndim < 2.
AdamWStep AdamWStepFor(const AdamWConfig& config, int64_t step, float lr, float grad_scale);

// Where AdamW computes and keeps its state.
struct AdamWOptions {
  std::shared_ptr<Backend> backend;  // null: a CPU backend on one thread
  // Null: AdamW owns an InMemoryOptimizerStateStore (moments in host memory). Not owned; must
  // outlive the optimizer.
  OptimizerStateStore* state = nullptr;
  int64_t sub_group_elems = 0;  // the own store's sub-group size; 0: all in one
};

class AdamW {
 public:
  // Moments are zero-initialized with the shapes of `params`.
  AdamW(const std::vector<Tensor>& params, const AdamWConfig& config, AdamWOptions options = {});

  // One update of every parameter with gradients multiplied by grad_scale; advances step().
  void Step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, float lr,
            float grad_scale);

  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }
  const AdamWConfig& config() const { return config_; }
  // "m.<name>" and "v.<name>" for every parameter (checkpoints read and write them); only with
  // the in-memory state store.
  Arena& moments();

 private:
  AdamWConfig config_;
  AdamWOptions options_;
  std::unique_ptr<InMemoryOptimizerStateStore> own_state_;
  OptimizerStateStore* state_ = nullptr;
  std::vector<Shape> shapes_;
  std::vector<bool> decay_;
  int64_t step_ = 0;
};

}  // namespace seqmesh
