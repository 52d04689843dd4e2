#include "runtime/layers.h"

namespace seqmesh {

void PositionsFromCuSeqlens(const int32_t* cu, int64_t count, int32_t* positions) {
  for (int64_t d = 0; d + 1 < count; ++d)
    for (int32_t i = cu[d]; i < cu[d + 1]; ++i) positions[i] = i - cu[d];
}

}  // namespace seqmesh
