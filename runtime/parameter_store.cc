#include "runtime/parameter_store.h"

#include <utility>

namespace seqmesh {

InMemoryParameterStore::InMemoryParameterStore(std::vector<Tensor> params, ParamLayout layout)
    : params_(std::move(params)), layout_(std::move(layout)) {
  for (const ParamLayout::Group& g : layout_.groups)
    SM_CHECK(g.first <= g.last && g.last <= params_.size())
        << "parameter group [" << g.first << ", " << g.last << ") outside the " << params_.size()
        << " parameters";
}

std::span<const Tensor> InMemoryParameterStore::Acquire(int group) {
  SM_CHECK(group >= 0 && group < static_cast<int>(layout_.groups.size()))
      << "parameter group " << group << " does not exist (" << layout_.groups.size() << " groups)";
  const ParamLayout::Group& g = layout_.groups[group];
  return std::span<const Tensor>(params_).subspan(g.first, g.last - g.first);
}

void InMemoryParameterStore::Release(int) {}
void InMemoryParameterStore::Prefetch(int) {}

}  // namespace seqmesh
