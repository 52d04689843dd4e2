// Element types. f32 is the compute type; bf16 is a storage type (weights and activations kept
// in half the bytes, widened to f32 before arithmetic); i32 holds token ids and offsets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace seqmesh {

enum class DType : uint8_t { kF32, kBF16, kI32 };

constexpr size_t DTypeSize(DType t) { return t == DType::kBF16 ? 2 : 4; }
std::string_view DTypeName(DType t);

// bf16 <-> f32 with round-to-nearest-even; NaN stays NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float Bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
void FloatToBf16(const float* in, uint16_t* out, size_t n);
void Bf16ToFloat(const uint16_t* in, float* out, size_t n);

}  // namespace seqmesh
