#include "runtime/threads.h"

#include <omp.h>

#include "runtime/check.h"

namespace seqmesh {

void SetNumThreads(int n) {
  SM_CHECK(n >= 1) << "thread count must be at least 1, got " << n;
  omp_set_num_threads(n);
}

int NumThreads() { return omp_get_max_threads(); }

}  // namespace seqmesh
