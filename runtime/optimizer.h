// The optimizer step: global-norm clipping, a warmup + cosine learning-rate schedule, and fused
// AdamW (one pass over p, g, m, v per element, vectorized, on all threads).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/cpu/vec.h"
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

// sqrt(sum of squares) over all tensors, accumulated in double in a fixed order.
double GlobalNorm(const std::vector<Tensor>& tensors);
// torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); max_norm <= 0
// disables clipping (factor 1).
float ClipScale(double norm, float max_norm);

// The per-element constants of update number `step` (1-based): the same arithmetic for AdamW
// here and for the ZeRO-1 shards in parallel/grad_sync. weight_decay is the configured value;
// callers zero it for tensors with ndim < 2.
cpu::AdamWStep AdamWStepFor(const AdamWConfig& config, int64_t step, float lr, float grad_scale);

class AdamW {
 public:
  // Moments are zero-initialized with the shapes of `params`.
  AdamW(const std::vector<Tensor>& params, const AdamWConfig& config);

  // One update of every parameter with gradients multiplied by grad_scale; advances step().
  void Step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, float lr,
            float grad_scale);

  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }
  const AdamWConfig& config() const { return config_; }
  Arena& moments() { return moments_; }  // "m.<name>" and "v.<name>" for every parameter

 private:
  AdamWConfig config_;
  Arena moments_{"adamw moments"};
  std::vector<Tensor*> m_, v_;
  std::vector<bool> decay_;
  int64_t step_ = 0;
};

}  // namespace seqmesh
