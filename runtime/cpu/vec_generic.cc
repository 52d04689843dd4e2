#define SM_VEC_NS generic
#define SM_VEC_ISA "generic"
#include "runtime/cpu/vec_impl.inc"
