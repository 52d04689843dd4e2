#include <cstdlib>
#include <cstring>

#include "runtime/cpu/vec.h"

namespace seqmesh::cpu {
namespace avx512 {
extern const VecKernels kKernels;
}
namespace avx2 {
extern const VecKernels kKernels;
}
namespace generic {
extern const VecKernels kKernels;
}

namespace {
const VecKernels* Choose() {
  // SEQMESH_ISA=generic|avx2|avx512 forces a table (tests, and users chasing a numerics question).
  const char* forced = std::getenv("SEQMESH_ISA");
  __builtin_cpu_init();
  bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (forced && std::strcmp(forced, "generic") == 0) return &generic::kKernels;
  if (forced && std::strcmp(forced, "avx2") == 0 && has2) return &avx2::kKernels;
  if (has512) return &avx512::kKernels;
  if (has2) return &avx2::kKernels;
  return &generic::kKernels;
}
}  // namespace

const VecKernels& Vec() {
  static const VecKernels* chosen = Choose();
  return *chosen;
}

const VecKernels* const* AllVecKernels(int* count) {
  __builtin_cpu_init();
  static const VecKernels* all[3];
  int n = 0;
  all[n++] = &generic::kKernels;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) all[n++] = &avx2::kKernels;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    all[n++] = &avx512::kKernels;
  *count = n;
  return all;
}

}  // namespace seqmesh::cpu
