#include <cstring>
#include <vector>

#include "runtime/check.h"
#include "runtime/cpu/layers.h"
#include "runtime/cpu/vec.h"

namespace seqmesh {

double CrossEntropyForwardBackward(float* logits, const int32_t* targets, int64_t t, int64_t vocab,
                                   float grad_scale, const ExecutionContext& ctx) {
  for (int64_t i = 0; i < t; ++i)
    SM_CHECK(targets[i] == kIgnoreIndex || (targets[i] >= 0 && targets[i] < vocab))
        << "target " << targets[i] << " at position " << i << " is outside the vocabulary [0, "
        << vocab << ") and is not the ignore index " << kIgnoreIndex;
  std::vector<float> row_loss(t, 0.0f);
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int64_t i = 0; i < t; ++i) {
    float* row = logits + i * vocab;
    if (targets[i] == kIgnoreIndex) {
      std::memset(row, 0, vocab * sizeof(float));
      continue;
    }
    row_loss[i] = cpu::Vec().cross_entropy(row, vocab, targets[i], grad_scale);
  }
  double sum = 0.0;
  for (int64_t i = 0; i < t; ++i) sum += row_loss[i];
  return sum;
}

}  // namespace seqmesh
