#include "runtime/optimizer_state_store.h"

#include <algorithm>

namespace seqmesh {

std::vector<std::vector<OptimizerSlice>> SubGroups(std::span<const Tensor> params,
                                                   int64_t group_elems) {
  SM_CHECK(group_elems >= 0) << "optimizer sub-group size must be >= 0, got " << group_elems;
  std::vector<std::vector<OptimizerSlice>> groups(1);
  int64_t in_group = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    for (int64_t b = 0; b < params[i].numel();) {
      if (group_elems > 0 && in_group == group_elems) {
        groups.emplace_back();
        in_group = 0;
      }
      const int64_t room = group_elems > 0 ? group_elems - in_group : params[i].numel() - b;
      const int64_t n = std::min(room, params[i].numel() - b);
      OptimizerSlice s;
      s.tensor = i;
      s.begin = b;
      s.count = n;
      groups.back().push_back(s);
      in_group += n;
      b += n;
    }
  }
  return groups;
}

std::span<const Tensor> CheckVisit(std::span<const Tensor> params, std::span<const Tensor> grads,
                                   StateAccess access, std::span<const Shape> shapes) {
  if (access != StateAccess::kUpdate) grads = {};
  SM_CHECK(access != StateAccess::kUpdate || !grads.empty())
      << "optimizer state: an update needs the gradients";
  SM_CHECK(params.size() == shapes.size() && (grads.empty() || grads.size() == shapes.size()))
      << "optimizer state: got " << params.size() << " params and " << grads.size()
      << " grads, expected " << shapes.size();
  for (size_t i = 0; i < params.size(); ++i) {
    CheckDType(params[i], DType::kF32);
    SM_CHECK(params[i].shape() == shapes[i])
        << "optimizer state: parameter '" << params[i].name() << "' "
        << params[i].shape().ToString() << " does not match the optimizer state "
        << shapes[i].ToString();
    if (grads.empty()) continue;
    CheckDType(grads[i], DType::kF32);
    SM_CHECK(grads[i].shape() == shapes[i])
        << "optimizer state: the gradient '" << grads[i].name() << "' "
        << grads[i].shape().ToString() << " does not match the optimizer state "
        << shapes[i].ToString();
  }
  return grads;
}

void OptimizerStateStore::HoldGradients() {
  SM_CHECK(false) << "this optimizer state store cannot hold gradients";
}
void OptimizerStateStore::GradientsReady(std::span<const Tensor>, size_t, size_t) {
  SM_CHECK(false) << "this optimizer state store does not hold gradients";
}

InMemoryOptimizerStateStore::InMemoryOptimizerStateStore(std::span<const Tensor> params,
                                                         int64_t sub_group_elems)
    : sub_group_elems_(sub_group_elems) {
  SM_CHECK(sub_group_elems >= 0) << "optimizer sub-group size must be >= 0, got "
                                 << sub_group_elems;
  for (const Tensor& p : params) {
    CheckDType(p, DType::kF32);
    m_.push_back(moments_.Add("m." + p.name(), DType::kF32, p.shape()));
    v_.push_back(moments_.Add("v." + p.name(), DType::kF32, p.shape()));
    shapes_.push_back(p.shape());
  }
  moments_.Allocate();
}

void InMemoryOptimizerStateStore::Visit(std::span<const Tensor> params,
                                        std::span<const Tensor> grads, StateAccess access,
                                        const Visitor& visit) {
  // The master weights are the parameters themselves, so every access is the same walk.
  grads = CheckVisit(params, grads, access, shapes_);
  for (std::vector<OptimizerSlice>& group : SubGroups(params, sub_group_elems_)) {
    for (OptimizerSlice& s : group) {
      s.master = params[s.tensor].f32() + s.begin;
      s.grad = grads.empty() ? nullptr : grads[s.tensor].f32() + s.begin;
      s.m = m_[s.tensor]->f32() + s.begin;
      s.v = v_[s.tensor]->f32() + s.begin;
    }
    visit(group);
  }
}

}  // namespace seqmesh
