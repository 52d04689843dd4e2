// The per-element constants of one AdamW update (torch.optim.AdamW arithmetic): what the
// optimizer hands a backend's AdamW kernel for each contiguous range.
#pragma once

namespace seqmesh {

struct AdamWStep {
  float lr;            // this step's learning rate
  float beta1, beta2;  // moment decay
  float eps;
  float weight_decay;                        // decoupled, applied as p *= 1 - lr * weight_decay
  float bias_correction1, bias_correction2;  // 1 - beta^step
  float grad_scale;                          // gradients are multiplied by this first (clipping)
};

}  // namespace seqmesh
