// Parameters and gradients of given shapes for the gradient-sync tests: two arenas, tensors
// "w<i>" and "grad.w<i>", parameters uniform in [-1, 1) from a fixed seed (so every rank and every
// copy starts equal), gradients zero.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace seqmesh::testing {

struct ParamSet {
  Arena params{"params"}, grads{"grads"};
  std::vector<Tensor> p, g;
  explicit ParamSet(const std::vector<Shape>& shapes) {
    std::vector<Tensor*> pp, gg;
    for (size_t i = 0; i < shapes.size(); ++i) {
      pp.push_back(params.Add("w" + std::to_string(i), DType::kF32, shapes[i]));
      gg.push_back(grads.Add("grad.w" + std::to_string(i), DType::kF32, shapes[i]));
    }
    params.Allocate();
    grads.Allocate();
    for (auto* t : pp) p.push_back(*t);
    for (auto* t : gg) g.push_back(*t);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& t : p)
      for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
  }
};

}  // namespace seqmesh::testing
