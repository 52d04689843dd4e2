#define SM_VEC_NS avx512
#define SM_VEC_ISA "avx512"
#include "runtime/cpu/vec_impl.inc"
