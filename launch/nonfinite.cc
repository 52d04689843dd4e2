#include "launch/nonfinite.h"

#include <cmath>

#include "runtime/check.h"

namespace seqmesh::launch {

bool NonFiniteGuard::Check(uint64_t step, double loss, double grad_norm) {
  if (std::isfinite(grad_norm)) {
    in_a_row_ = 0;
    return false;
  }
  ++skipped_;
  ++in_a_row_;
  SM_CHECK(policy_ == NonFinitePolicy::kSkip)
      << "step " << step << ": the gradient norm is " << grad_norm << " (loss " << loss
      << "): the update was skipped and the run stops (training.nonfinite = \"stop\"); resume "
         "from the last checkpoint with a lower optimizer.lr or a tighter training.grad_clip, "
         "or set training.nonfinite = \"skip\" to skip such steps";
  SM_CHECK(in_a_row_ < limit_)
      << "steps " << step - in_a_row_ + 1 << "-" << step << ": " << in_a_row_
      << " non-finite gradient norms in a row (training.nonfinite_limit = " << limit_
      << "; the last " << grad_norm << ", loss " << loss
      << "): the run stops; resume from the last checkpoint with a lower optimizer.lr";
  return true;
}

}  // namespace seqmesh::launch
