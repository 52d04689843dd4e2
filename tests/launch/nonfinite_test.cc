// training.nonfinite (issue 13, item 6): "stop" ends the run at the first non-finite gradient
// norm, naming the step and the fix; "skip" counts skipped steps, forgives them after a finite
// one, and ends the run after training.nonfinite_limit in a row.
#include "launch/nonfinite.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "tests/runtime/test_util.h"

namespace seqmesh::launch {
namespace {

using seqmesh::testing::ThrowsWith;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(NonFiniteGuard, StopEndsTheRunAtTheFirstNonFiniteNorm) {
  TrainingConfig t;  // the default policy is stop
  NonFiniteGuard guard(t);
  EXPECT_FALSE(guard.Check(1, 3.5, 0.7));
  EXPECT_TRUE(ThrowsWith([&] { guard.Check(2, kNaN, kNaN); },
                         "step 2: the gradient norm is nan (loss nan): the update was skipped "
                         "and the run stops (training.nonfinite = \"stop\")"));
  EXPECT_EQ(guard.skipped(), 1);
}

TEST(NonFiniteGuard, SkipCountsForgivesAfterAFiniteStepAndStopsAfterTheLimitInARow) {
  TrainingConfig t;
  t.nonfinite = NonFinitePolicy::kSkip;
  t.nonfinite_limit = 3;
  NonFiniteGuard guard(t);
  EXPECT_TRUE(guard.Check(1, kInf, kInf));
  EXPECT_TRUE(guard.Check(2, 4.0, kNaN));
  EXPECT_FALSE(guard.Check(3, 3.0, 1.0));  // the count in a row starts again
  EXPECT_TRUE(guard.Check(4, kNaN, kNaN));
  EXPECT_TRUE(guard.Check(5, kNaN, kNaN));
  EXPECT_TRUE(ThrowsWith([&] { guard.Check(6, kNaN, kNaN); },
                         "steps 4-6: 3 non-finite gradient norms in a row "
                         "(training.nonfinite_limit = 3"));
  EXPECT_EQ(guard.skipped(), 5);
}

}  // namespace
}  // namespace seqmesh::launch
