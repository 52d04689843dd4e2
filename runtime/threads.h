// Thread count of the CPU kernels (oneDNN and ours share one OpenMP pool).
#pragma once

namespace seqmesh {

// Sets the number of threads every kernel uses from now on; n >= 1.
void SetNumThreads(int n);
int NumThreads();

}  // namespace seqmesh
