#include "runtime/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "runtime/cpu/vec.h"

namespace seqmesh {
namespace {

// Work is cut into chunks of whole tensors' ranges so every thread gets similar work and the
// order of a reduction does not depend on the thread count.
constexpr int64_t kChunk = 1 << 16;

struct Chunk {
  int32_t tensor;
  int64_t begin, end;
};

std::vector<Chunk> Chunks(const std::vector<Tensor>& tensors) {
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < tensors.size(); ++i)
    for (int64_t b = 0; b < tensors[i].numel(); b += kChunk)
      chunks.push_back({static_cast<int32_t>(i), b, std::min(tensors[i].numel(), b + kChunk)});
  return chunks;
}

}  // namespace

void AdamWConfig::Validate() const {
  SM_CHECK(beta1 >= 0 && beta1 < 1) << "optimizer.beta1 must be in [0, 1), got " << beta1;
  SM_CHECK(beta2 >= 0 && beta2 < 1) << "optimizer.beta2 must be in [0, 1), got " << beta2;
  SM_CHECK(eps > 0) << "optimizer.eps must be > 0, got " << eps;
  SM_CHECK(weight_decay >= 0) << "optimizer.weight_decay must be >= 0, got " << weight_decay;
}

float LrSchedule::At(int64_t step) const {
  if (step < warmup_steps)
    return max_lr * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  return static_cast<float>(min_lr + 0.5 * (max_lr - min_lr) *
                                         (1.0 + std::cos(std::numbers::pi * progress)));
}

void LrSchedule::Validate() const {
  SM_CHECK(max_lr > 0) << "max_lr must be > 0, got " << max_lr;
  SM_CHECK(min_lr >= 0 && min_lr <= max_lr)
      << "min_lr must be in [0, max_lr], got " << min_lr << " with max_lr " << max_lr;
  SM_CHECK(warmup_steps >= 0) << "warmup_steps must be >= 0, got " << warmup_steps;
  SM_CHECK(total_steps >= 1) << "total_steps must be >= 1, got " << total_steps;
  SM_CHECK(warmup_steps <= total_steps)
      << "warmup_steps (" << warmup_steps << ") exceeds total_steps (" << total_steps << ")";
}

double GlobalNorm(const std::vector<Tensor>& tensors) {
  // Checked before the parallel loop: an exception cannot leave an OpenMP region.
  for (const Tensor& t : tensors) CheckDType(t, DType::kF32);
  const std::vector<Chunk> chunks = Chunks(tensors);
  std::vector<double> partial(chunks.size());
  const int64_t n = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const Chunk& c = chunks[i];
    partial[i] = cpu::Vec().sum_squares(tensors[c.tensor].f32() + c.begin, c.end - c.begin);
  }
  double sum = 0.0;
  for (double p : partial) sum += p;
  return std::sqrt(sum);
}

cpu::AdamWStep AdamWStepFor(const AdamWConfig& config, int64_t step, float lr, float grad_scale) {
  cpu::AdamWStep s{};
  s.lr = lr;
  s.beta1 = config.beta1;
  s.beta2 = config.beta2;
  s.eps = config.eps;
  s.weight_decay = config.weight_decay;
  s.bias_correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(config.beta1), step));
  s.bias_correction2 = static_cast<float>(1.0 - std::pow(static_cast<double>(config.beta2), step));
  s.grad_scale = grad_scale;
  return s;
}

float ClipScale(double norm, float max_norm) {
  SM_CHECK(std::isfinite(norm)) << "the gradient norm is " << norm
                                << ": the loss diverged or an input is corrupt";
  if (max_norm <= 0.0f) return 1.0f;
  return static_cast<float>(std::min(1.0, max_norm / (norm + 1e-6)));
}

AdamW::AdamW(const std::vector<Tensor>& params, const AdamWConfig& config) : config_(config) {
  config_.Validate();
  for (const Tensor& p : params) {
    CheckDType(p, DType::kF32);
    m_.push_back(moments_.Add("m." + p.name(), DType::kF32, p.shape()));
    v_.push_back(moments_.Add("v." + p.name(), DType::kF32, p.shape()));
    decay_.push_back(p.shape().ndim() >= 2);
  }
  moments_.Allocate();
}

void AdamW::Step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, float lr,
                 float grad_scale) {
  SM_CHECK(params.size() == m_.size() && grads.size() == m_.size())
      << "AdamW::Step got " << params.size() << " params and " << grads.size()
      << " grads, expected " << m_.size();
  for (size_t i = 0; i < params.size(); ++i) {
    // Checked before the parallel loop: an exception cannot leave an OpenMP region.
    CheckDType(params[i], DType::kF32);
    CheckDType(grads[i], DType::kF32);
    SM_CHECK(params[i].shape() == m_[i]->shape() && grads[i].shape() == m_[i]->shape())
        << "AdamW::Step: parameter '" << params[i].name() << "' " << params[i].shape().ToString()
        << " or its gradient '" << grads[i].name() << "' " << grads[i].shape().ToString()
        << " does not match the optimizer state " << m_[i]->shape().ToString();
  }
  ++step_;
  const cpu::AdamWStep base = AdamWStepFor(config_, step_, lr, grad_scale);

  const std::vector<Chunk> chunks = Chunks(params);
  const int64_t n = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const Chunk& c = chunks[i];
    cpu::AdamWStep s = base;
    s.weight_decay = decay_[c.tensor] ? config_.weight_decay : 0.0f;
    cpu::Vec().adamw(params[c.tensor].f32() + c.begin, grads[c.tensor].f32() + c.begin,
                     m_[c.tensor]->f32() + c.begin, v_[c.tensor]->f32() + c.begin, c.end - c.begin,
                     s);
  }
}

}  // namespace seqmesh
