// SM_CHECK_CUDA: the check family (runtime/check.h) for CUDA runtime calls. The message carries
// the error's name and text: "CUDA returned status 2. out of memory. allocating arena 'acts'".
// Owned here; parallel/nccl includes it.
#pragma once

#include <cuda_runtime.h>

#include "runtime/check.h"

#define SM_CHECK_CUDA(expr) \
  SM_CHECK_STATUS(expr, cudaSuccess, "CUDA") << cudaGetErrorString(sm_status_) << ". "
