#include "runtime/rope.h"

#include <cmath>
#include <numbers>

#include "runtime/check.h"

namespace seqmesh {

const std::vector<std::string>& RopeTypeNames() {
  static const std::vector<std::string> names = {"default", "linear", "llama3"};
  return names;
}

const std::string& Name(RopeType type) { return RopeTypeNames().at(static_cast<size_t>(type)); }

void RopeScaling::Validate() const {
  if (type == RopeType::kDefault) return;
  SM_CHECK(std::isfinite(factor) && factor >= 1.0)
      << "model.rope_factor must be >= 1 for rope_scaling \"" << Name(type) << "\", got " << factor;
  if (type != RopeType::kLlama3) return;
  SM_CHECK(std::isfinite(low_freq_factor) && low_freq_factor > 0)
      << "model.rope_low_freq_factor must be > 0, got " << low_freq_factor;
  SM_CHECK(std::isfinite(high_freq_factor) && high_freq_factor > low_freq_factor)
      << "model.rope_high_freq_factor (" << high_freq_factor
      << ") must be greater than model.rope_low_freq_factor (" << low_freq_factor << ")";
  SM_CHECK(original_max_positions >= 1)
      << "model.rope_original_max_positions must be >= 1, got " << original_max_positions;
}

std::vector<double> RopeInverseFrequencies(int head_dim, double theta, const RopeScaling& s) {
  const int half = head_dim / 2;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(theta, -2.0 * i / head_dim);
  switch (s.type) {
    case RopeType::kDefault:
      break;
    case RopeType::kLinear:
      for (double& f : inv_freq) f /= s.factor;
      break;
    case RopeType::kLlama3: {
      const double old_len = static_cast<double>(s.original_max_positions);
      const double low_wavelen = old_len / s.low_freq_factor;
      const double high_wavelen = old_len / s.high_freq_factor;
      for (double& f : inv_freq) {
        const double wavelen = 2 * std::numbers::pi / f;
        if (wavelen < high_wavelen) continue;
        if (wavelen > low_wavelen) {
          f /= s.factor;
          continue;
        }
        const double smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
      break;
    }
  }
  return inv_freq;
}

}  // namespace seqmesh
