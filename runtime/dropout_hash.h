// The uniform number behind Backend::Dropout's mask, shared by every backend (host and device
// code compute the same bits): splitmix64 of the key and the element's index.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define SEQMESH_HOST_DEVICE __host__ __device__
#else
#define SEQMESH_HOST_DEVICE
#endif

namespace seqmesh {

// The uniform [0, 1) number of element `index` under `key` (24 bits); Dropout keeps the element
// when it is >= p.
SEQMESH_HOST_DEVICE inline float DropoutUniform(uint64_t key, uint64_t index) {
  uint64_t z = key ^ (index * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * 0x1.0p-24f;
}

}  // namespace seqmesh
