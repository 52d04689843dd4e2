#include "runtime/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "runtime/cpu/vec.h"

namespace seqmesh {
namespace {

// AdamW's ranges are cut at multiples of kChunk elements of each tensor (and at sub-group ends),
// so every thread gets similar work; the global norm sums squares over chunks of the same size
// (runtime/cpu/cpu_backend.cc), which AppendChunkSquares repeats.
constexpr int64_t kChunk = 1 << 16;

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

double GlobalNorm(const std::vector<Tensor>& tensors, const ExecutionContext& context) {
  return MakeBackend(Device::kCpu, context)->GlobalNorm(tensors);
}

void AppendChunkSquares(const Tensor& t, std::vector<double>& out) {
  CheckDType(t, DType::kF32);
  for (int64_t b = 0; b < t.numel(); b += kChunk)
    out.push_back(cpu::Vec().sum_squares(t.f32() + b, std::min(t.numel(), b + kChunk) - b));
}

double NormOfSquares(const std::vector<double>& squares) {
  double sum = 0.0;
  for (double s : squares) sum += s;
  return std::sqrt(sum);
}

AdamWStep AdamWStepFor(const AdamWConfig& config, int64_t step, float lr, float grad_scale) {
  AdamWStep s{};
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

AdamW::AdamW(const std::vector<Tensor>& params, const AdamWConfig& config, AdamWOptions options)
    : config_(config), options_(std::move(options)) {
  config_.Validate();
  SM_CHECK(options_.sub_group_elems >= 0)
      << "optimizer sub-group size must be >= 0, got " << options_.sub_group_elems;
  for (const Tensor& p : params) {
    CheckDType(p, DType::kF32);
    shapes_.push_back(p.shape());
    decay_.push_back(p.shape().ndim() >= 2);
  }
  if (!options_.backend) options_.backend = MakeBackend(Device::kCpu, {});
  state_ = options_.state;
  if (!state_) {
    own_state_ = std::make_unique<InMemoryOptimizerStateStore>(params, options_.sub_group_elems);
    state_ = own_state_.get();
  }
}

Arena& AdamW::moments() {
  SM_CHECK(own_state_ != nullptr)
      << "AdamW::moments(): the optimizer state is in an external store, not in memory";
  return own_state_->moments();
}

void AdamW::Step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, float lr,
                 float grad_scale) {
  SM_CHECK(params.size() == shapes_.size() && grads.size() == shapes_.size())
      << "AdamW::Step got " << params.size() << " params and " << grads.size()
      << " grads, expected " << shapes_.size();
  for (size_t i = 0; i < params.size(); ++i) {
    // Checked before the parallel loop: an exception cannot leave an OpenMP region.
    CheckDType(params[i], DType::kF32);
    CheckDType(grads[i], DType::kF32);
    SM_CHECK(params[i].shape() == shapes_[i] && grads[i].shape() == shapes_[i])
        << "AdamW::Step: parameter '" << params[i].name() << "' " << params[i].shape().ToString()
        << " or its gradient '" << grads[i].name() << "' " << grads[i].shape().ToString()
        << " does not match the optimizer state " << shapes_[i].ToString();
  }
  ++step_;
  const AdamWStep base = AdamWStepFor(config_, step_, lr, grad_scale);
  std::vector<AdamWRange> ranges;
  // Each sub-group in ranges of at most kChunk elements, cut at multiples of kChunk of each
  // tensor; with one sub-group these are exactly the whole tensors' chunks.
  auto update = [&](std::span<const OptimizerSlice> group) {
    ranges.clear();
    for (const OptimizerSlice& s : group) {
      AdamWStep step = base;
      step.weight_decay = decay_[s.tensor] ? config_.weight_decay : 0.0f;
      for (int64_t b = s.begin; b < s.begin + s.count;) {
        const int64_t e = std::min(s.begin + s.count, (b / kChunk + 1) * kChunk);
        const int64_t o = b - s.begin;
        ranges.push_back({s.master + o, s.grad + o, s.m + o, s.v + o, e - b, step});
        b = e;
      }
    }
    options_.backend->AdamW(ranges);
  };
  state_->Visit(params, grads, StateAccess::kUpdate, update);
}

}  // namespace seqmesh
