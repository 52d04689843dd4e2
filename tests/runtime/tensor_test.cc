// Tensors, arenas and bf16 storage: exact results from crafted inputs.
#include "runtime/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace seqmesh {
namespace {

TEST(Bf16, RoundsToNearestEven) {
  // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to the even one, 1.
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 0x1.0p-8f)), 1.0f);
  // 1 + 3*2^-8 lies between 1 + 2^-7 (odd mantissa) and 1 + 2^-6: the tie goes up to 1 + 2^-6.
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 3 * 0x1.0p-8f)), 1.0f + 0x1.0p-6f);
  // Just above the midpoint rounds up.
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 0x1.0p-8f + 0x1.0p-20f)), 1.0f + 0x1.0p-7f);
  // Values with 8 significant bits are exact.
  for (float x : {0.0f, -2.5f, 3.0f, 1024.0f, -0x1.fep+3f})
    EXPECT_EQ(Bf16ToFloat(FloatToBf16(x)), x);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::infinity())),
            std::numeric_limits<float>::infinity());
}

TEST(Arena, CarvesAlignedAndPackedViewsFromOneAllocation) {
  Arena arena("test");
  Tensor* a = arena.Add("a", DType::kF32, {3});        // 12 bytes
  Tensor* b = arena.Add("b", DType::kF32, {2, 2});     // aligned: starts at 64
  Tensor* c = arena.Add("c", DType::kF32, {5}, true);  // packed: right after b
  Tensor* d = arena.Add("d", DType::kBF16, {7});
  arena.Allocate();
  char* base = static_cast<char*>(arena.base());
  EXPECT_EQ(static_cast<char*>(a->data()) - base, 0);
  EXPECT_EQ(static_cast<char*>(b->data()) - base, 64);
  EXPECT_EQ(static_cast<char*>(c->data()) - base, 64 + 16);
  EXPECT_EQ(static_cast<char*>(d->data()) - base, 128);
  EXPECT_EQ(d->bytes(), 14u);
  EXPECT_EQ(arena.bytes(), 192u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c->f32()[i], 0.0f);  // zero-initialized
  EXPECT_EQ(&arena.Find("c"), c);
  EXPECT_THROW(arena.Add("e", DType::kF32, {1}), Error);  // after Allocate
}

TEST(Tensor, RowsIsANamedViewOfTheFirstDimension) {
  float data[12];
  for (int i = 0; i < 12; ++i) data[i] = static_cast<float>(i);
  Tensor t("x", DType::kF32, {4, 3}, data);
  Tensor r = t.Rows(1, 3);
  EXPECT_EQ(r.shape(), Shape({2, 3}));
  EXPECT_EQ(r.f32()[0], 3.0f);
  EXPECT_EQ(r.name(), "x[1:3]");
  try {
    t.Rows(2, 5);
    FAIL() << "out-of-range rows accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'x'"), std::string::npos) << e.what();
  }
}

TEST(CheckShape, NamesTheTensorAndBothShapes) {
  float data[6];
  Tensor t("model.layers.0.mlp.up_proj.weight", DType::kF32, {2, 3}, data);
  try {
    CheckShape(t, {3, 2});
    FAIL() << "wrong shape accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'model.layers.0.mlp.up_proj.weight' has shape [2, 3], expected [3, 2]"),
              std::string::npos)
        << m;
  }
}

}  // namespace
}  // namespace seqmesh
