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

InMemoryOptimizerStateStore::InMemoryOptimizerStateStore(std::span<const Tensor> params) {
  for (const Tensor& p : params) {
    CheckDType(p, DType::kF32);
    m_.push_back(moments_.Add("m." + p.name(), DType::kF32, p.shape()));
    v_.push_back(moments_.Add("v." + p.name(), DType::kF32, p.shape()));
  }
  moments_.Allocate();
}

void InMemoryOptimizerStateStore::Visit(std::span<const Tensor> params,
                                        std::span<const Tensor> grads, int64_t group_elems,
                                        const Visitor& visit) {
  SM_CHECK(params.size() == m_.size() && grads.size() == m_.size())
      << "optimizer state: got " << params.size() << " params and " << grads.size()
      << " grads, expected " << m_.size();
  for (size_t i = 0; i < params.size(); ++i) {
    CheckDType(params[i], DType::kF32);
    CheckDType(grads[i], DType::kF32);
    SM_CHECK(params[i].shape() == m_[i]->shape() && grads[i].shape() == m_[i]->shape())
        << "optimizer state: parameter '" << params[i].name() << "' "
        << params[i].shape().ToString() << " or its gradient '" << grads[i].name() << "' "
        << grads[i].shape().ToString() << " does not match the optimizer state "
        << m_[i]->shape().ToString();
  }
  for (std::vector<OptimizerSlice>& group : SubGroups(params, group_elems)) {
    for (OptimizerSlice& s : group) {
      s.master = params[s.tensor].f32() + s.begin;
      s.grad = grads[s.tensor].f32() + s.begin;
      s.m = m_[s.tensor]->f32() + s.begin;
      s.v = v_[s.tensor]->f32() + s.begin;
    }
    visit(group);
  }
}

}  // namespace seqmesh
