#include "runtime/activation_store.h"

namespace seqmesh {

InMemoryActivationStore::InMemoryActivationStore(int64_t layers)
    : saved_(layers), held_(layers, false) {}

void InMemoryActivationStore::Save(int64_t layer, const Tensor& input) {
  SM_CHECK(layer >= 0 && layer < static_cast<int64_t>(saved_.size()))
      << "activation store: layer " << layer << " of " << saved_.size();
  saved_[layer] = input;
  held_[layer] = true;
}

void InMemoryActivationStore::Prefetch(int64_t) {}

Tensor InMemoryActivationStore::Fetch(int64_t layer) {
  SM_CHECK(layer >= 0 && layer < static_cast<int64_t>(saved_.size()) && held_[layer])
      << "activation store: layer " << layer << " has no saved input (Save in Forward first)";
  return saved_[layer];
}

void InMemoryActivationStore::Release(int64_t layer) {
  SM_CHECK(layer >= 0 && layer < static_cast<int64_t>(saved_.size()))
      << "activation store: layer " << layer << " of " << saved_.size();
  held_[layer] = false;
}

}  // namespace seqmesh
