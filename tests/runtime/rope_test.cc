// RoPE scaling: the cos/sin tables of the default, linear and llama3 rope types equal those of
// Hugging Face's formulas computed independently in PyTorch (tests/reference/make_rope_fixture.py,
// float64, stored as float32); linear scaling is position interpolation exactly; scaling changes
// a forward pass; bad parameters are named errors.
#include "runtime/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/model.h"
#include "tests/reference/fixture.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

using testing::Fixture;
using testing::ThrowsWith;

struct Table {
  std::vector<float> cos, sin;
};

// The model's path: inverse frequencies, then the backend's table kernel.
Table BackendTable(const std::vector<int32_t>& positions, int head_dim, double theta,
                   const RopeScaling& scaling) {
  const int64_t t = static_cast<int64_t>(positions.size()), half = head_dim / 2;
  Table out{std::vector<float>(t * half), std::vector<float>(t * half)};
  std::vector<int32_t> pos = positions;
  const std::vector<double> inv_freq = RopeInverseFrequencies(head_dim, theta, scaling);
  EXPECT_EQ(static_cast<int64_t>(inv_freq.size()), half);
  auto backend = MakeBackend(Device::kCpu, {});
  backend->RopeTable(Tensor("positions", DType::kI32, Shape{t}, pos.data()), inv_freq,
                     Tensor("cos", DType::kF32, Shape{t, half}, out.cos.data()),
                     Tensor("sin", DType::kF32, Shape{t, half}, out.sin.data()));
  return out;
}

class RopeFixture : public ::testing::TestWithParam<std::string> {};

// Every entry within 2 ulp of 1 (the stored value is the float rounding of the float64 answer;
// the C++ rounds its own double once: they may differ in the last bit, never more).
TEST_P(RopeFixture, TableEqualsHuggingFaceFormula) {
  const Fixture f = Fixture::Load(std::string(SEQMESH_FIXTURE_DIR) + "/rope_scaling.bin");
  const std::string name = GetParam();
  RopeScaling s;
  s.type = static_cast<RopeType>(f.ScalarInt(name + ".type"));
  s.factor = f.Scalar(name + ".factor");
  s.low_freq_factor = f.Scalar(name + ".low_freq_factor");
  s.high_freq_factor = f.Scalar(name + ".high_freq_factor");
  s.original_max_positions = f.ScalarInt(name + ".original_max_position_embeddings");
  s.Validate();
  const int head_dim = f.ScalarInt(name + ".head_dim");
  const Tensor& pos = f.Get(name + ".positions");
  const std::vector<int32_t> positions(pos.i32(), pos.i32() + pos.numel());
  const Table got = BackendTable(positions, head_dim, f.Scalar(name + ".theta"), s);
  const Tensor& cos = f.Get(name + ".cos");
  const Tensor& sin = f.Get(name + ".sin");
  ASSERT_EQ(cos.numel(), static_cast<int64_t>(got.cos.size()));
  for (int64_t i = 0; i < cos.numel(); ++i) {
    const int64_t row = i / (head_dim / 2), col = i % (head_dim / 2);
    ASSERT_NEAR(got.cos[i], cos.f32()[i], 1.2e-7)
        << name << " position " << positions[row] << " frequency " << col;
    ASSERT_NEAR(got.sin[i], sin.f32()[i], 1.2e-7)
        << name << " position " << positions[row] << " frequency " << col;
  }
}

INSTANTIATE_TEST_SUITE_P(HuggingFace, RopeFixture,
                         ::testing::Values("default", "linear", "llama3_2", "llama3_1",
                                           "llama3_small"),
                         [](const auto& info) { return info.param; });

// Linear scaling divides every frequency by the factor: position 4p scaled by 4 is position p.
TEST(RopeScaling, LinearIsPositionInterpolation) {
  RopeScaling linear;
  linear.type = RopeType::kLinear;
  linear.factor = 4.0;
  const std::vector<double> plain = RopeInverseFrequencies(32, 10000.0, {});
  const std::vector<double> scaled = RopeInverseFrequencies(32, 10000.0, linear);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(scaled[i], plain[i] / 4.0) << i;
}

// llama3's three bands, by wavelength against original_max_positions / high_freq_factor and
// / low_freq_factor: kept, divided by the factor, and in between strictly between the two.
TEST(RopeScaling, Llama3KeepsHighDividesLowAndSmoothsBetween) {
  RopeScaling s;
  s.type = RopeType::kLlama3;
  s.factor = 8.0;
  s.original_max_positions = 8192;
  const std::vector<double> plain = RopeInverseFrequencies(128, 500000.0, {});
  const std::vector<double> scaled = RopeInverseFrequencies(128, 500000.0, s);
  int kept = 0, divided = 0, smoothed = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2 * M_PI / plain[i];
    if (wavelen < 8192.0 / 4) {
      EXPECT_EQ(scaled[i], plain[i]) << i;
      ++kept;
    } else if (wavelen > 8192.0 / 1) {
      EXPECT_EQ(scaled[i], plain[i] / 8) << i;
      ++divided;
    } else {
      EXPECT_LT(scaled[i], plain[i]) << i;
      EXPECT_GT(scaled[i], plain[i] / 8) << i;
      ++smoothed;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(smoothed, 0);
}

TEST(RopeScaling, BadParametersAreNamed) {
  RopeScaling s;
  s.type = RopeType::kLinear;
  s.factor = 0.5;
  EXPECT_TRUE(ThrowsWith([&] { s.Validate(); }, "model.rope_factor must be >= 1"));
  s.type = RopeType::kLlama3;
  s.factor = 8;
  s.high_freq_factor = 1.0;
  EXPECT_TRUE(ThrowsWith([&] { s.Validate(); },
                         "model.rope_high_freq_factor (1) must be greater than "
                         "model.rope_low_freq_factor (1)"));
  s.high_freq_factor = 4;
  s.original_max_positions = 0;
  EXPECT_TRUE(ThrowsWith([&] { s.Validate(); }, "model.rope_original_max_positions must be >= 1"));
  EXPECT_EQ(Name(RopeType::kLlama3), "llama3");
}

// The same weights and tokens with and without scaling: the logits differ (the tables reach the
// attention), and a scaling that changes no frequency (llama3 whose bands all lie above the
// wavelengths of a tiny head) leaves them bit-identical.
TEST(RopeScaling, ScalingReachesTheForwardPass) {
  ModelConfig c;
  c.vocab = 29;
  c.hidden = 32;
  c.layers = 2;
  c.heads = 2;
  c.kv_heads = 1;
  c.ffn = 48;
  c.rope_theta = 10000.0f;
  ModelOptions o;
  o.max_tokens = 24;
  std::vector<int32_t> tokens(24), targets(24), cu = {0, 24};
  for (int i = 0; i < 24; ++i) tokens[i] = (7 * i + 3) % 29, targets[i] = (5 * i + 1) % 29;
  auto logits = [&](const RopeScaling& s) {
    ModelConfig cs = c;
    cs.rope_scaling = s;
    Model m(cs, o);
    m.InitRandom(11, 0.2f);
    std::vector<float> out(24 * 29);
    m.Forward({tokens.data(), targets.data(), cu.data(), 1, 24}, 24.0f, out.data());
    return out;
  };
  const std::vector<float> plain = logits({});
  RopeScaling linear;
  linear.type = RopeType::kLinear;
  linear.factor = 2.0;
  EXPECT_NE(logits(linear), plain);
  RopeScaling llama3;
  llama3.type = RopeType::kLlama3;
  llama3.factor = 8.0;
  llama3.original_max_positions = 16;  // low-frequency band: wavelengths above 16
  EXPECT_NE(logits(llama3), plain);
  llama3.original_max_positions = 1 << 30;  // every wavelength is below 2^30 / 1: all kept
  llama3.low_freq_factor = 0.5;
  llama3.high_freq_factor = 1;
  EXPECT_EQ(logits(llama3), plain);
}

}  // namespace
}  // namespace seqmesh
