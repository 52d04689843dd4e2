// Rotary position embeddings: the inverse frequencies of each pair of head dimensions, plain or
// scaled for a context longer than the model was pretrained on. The kernels (Backend::RopeTable)
// turn these into the cos/sin tables; this file owns the frequencies.
//
// Scalings, as Hugging Face transformers computes them (modeling_rope_utils.py):
//   default  inv_freq[i] = theta^(-2i / head_dim)
//   linear   inv_freq[i] / factor   (position interpolation: LongChat, Vicuna 16K)
//   llama3   _compute_llama3_parameters (Llama 3.1, 3.2, 3.3): with wavelen = 2 pi / inv_freq,
//            low = original_max_positions / low_freq_factor and
//            high = original_max_positions / high_freq_factor,
//              wavelen < high: inv_freq                 (high frequencies kept)
//              wavelen > low:  inv_freq / factor        (low frequencies interpolated)
//              otherwise:      (1 - s) inv_freq / factor + s inv_freq,
//                              s = (original_max_positions / wavelen - low_freq_factor) /
//                                  (high_freq_factor - low_freq_factor)
// Every frequency is computed in double; the tables round once, to float, at the end. Both
// scalings have attention_factor 1 in Hugging Face (cos and sin are not rescaled).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqmesh {

enum class RopeType { kDefault, kLinear, kLlama3 };
// "default", "linear", "llama3": Hugging Face's rope_type names, in enum order.
const std::vector<std::string>& RopeTypeNames();
const std::string& Name(RopeType type);

struct RopeScaling {
  RopeType type = RopeType::kDefault;
  double factor = 1.0;                    // linear, llama3
  double low_freq_factor = 1.0;           // llama3
  double high_freq_factor = 4.0;          // llama3
  int64_t original_max_positions = 8192;  // llama3: original_max_position_embeddings

  // Errors name the config key (model.rope_factor, ...) and the value.
  void Validate() const;
  bool operator==(const RopeScaling&) const = default;
};

// (head_dim / 2) inverse frequencies, in double.
std::vector<double> RopeInverseFrequencies(int head_dim, double theta, const RopeScaling& scaling);

}  // namespace seqmesh
