// Conventions of the model's inputs shared by every layer that builds batches.
#pragma once

#include <cstdint>

namespace seqmesh {

// A target that takes no part in the loss (no next token, or a token not trained on).
constexpr int32_t kIgnoreIndex = -100;

// RoPE positions of packed documents: positions restart at 0 at each document,
// positions[cu[i] + j] = j, for cu_seqlens of `count` entries.
void PositionsFromCuSeqlens(const int32_t* cu_seqlens, int64_t count, int32_t* positions);

}  // namespace seqmesh
