#define SM_VEC_NS avx2
#define SM_VEC_ISA "avx2"
#include "runtime/cpu/vec_impl.inc"
