// examples/train_synthetic: the main job until the trainer lands. Trains a small Llama on
// synthetic packed documents whose tokens follow a rule the model can only learn in context
// (each document is an arithmetic sequence a, a+k, a+2k, ... mod vocab with its own a and k),
// and prints the loss falling.
//
//   build/examples/train_synthetic [--steps 80] [--threads 2] [--seed 1] [--checkpoint]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "runtime/layers.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"

using namespace seqmesh;

namespace {

struct PackedBatch {
  std::vector<int32_t> tokens, targets, cu;
};

// Documents of 8..96 tokens packed into `capacity` tokens.
PackedBatch DrawBatch(std::mt19937& rng, int64_t capacity, int64_t vocab) {
  PackedBatch b;
  b.cu.push_back(0);
  while (static_cast<int64_t>(b.tokens.size()) < capacity) {
    int64_t len = 8 + rng() % 89;
    len = std::min<int64_t>(len, capacity - b.tokens.size());
    const int64_t a = rng() % vocab, k = 1 + rng() % 5;
    for (int64_t i = 0; i < len; ++i) b.tokens.push_back(static_cast<int32_t>((a + i * k) % vocab));
    for (int64_t i = 0; i < len; ++i)
      b.targets.push_back(i + 1 < len ? b.tokens[b.cu.back() + i + 1] : kIgnoreIndex);
    b.cu.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 80, threads = 2;
  uint64_t seed = 1;
  bool checkpoint = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc)
      steps = std::atoi(argv[++i]);
    else if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "--seed" && i + 1 < argc)
      seed = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--checkpoint")
      checkpoint = true;
    else {
      std::fprintf(stderr,
                   "usage: train_synthetic [--steps N] [--threads N] [--seed S] [--checkpoint]\n");
      return 2;
    }
  }
  try {
    ModelConfig config;
    config.vocab = 64;
    config.hidden = 128;
    config.layers = 2;
    config.heads = 4;
    config.kv_heads = 2;
    config.ffn = 256;
    const int64_t capacity = 1024;
    ModelOptions options;
    options.max_tokens = capacity;
    options.checkpoint_layers.assign(config.layers, checkpoint);
    options.backend = MakeBackend(Device::kCpu, ExecutionContext{threads});
    Model model(config, options);
    model.InitRandom(seed);
    AdamWConfig oc;
    oc.weight_decay = 0.01f;
    AdamW adamw(model.trainable(), oc, {model.shared_backend()});
    LrSchedule schedule{3e-3f, 3e-4f, std::min(10, steps), steps};
    schedule.Validate();
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::printf(
        "model: %.2fM params, %ld layers, hidden %ld, heads %ld/%ld kv; %ld tokens per step\n",
        config.NumParams() / 1e6, static_cast<long>(config.layers),
        static_cast<long>(config.hidden), static_cast<long>(config.heads),
        static_cast<long>(config.kv_heads), static_cast<long>(capacity));
    const auto start = std::chrono::steady_clock::now();
    for (int step = 0; step < steps; ++step) {
      PackedBatch b = DrawBatch(rng, capacity, config.vocab);
      float normalizer = 0;
      for (int32_t t : b.targets) normalizer += t != kIgnoreIndex;
      Batch batch{b.tokens.data(),
                  b.targets.data(),
                  b.cu.data(),
                  static_cast<int64_t>(b.cu.size()) - 1,
                  static_cast<int64_t>(b.tokens.size()),
                  nullptr};
      model.ZeroGrad();
      const float loss = model.Forward(batch, normalizer);
      model.Backward();
      const double norm = model.backend().GlobalNorm(model.grads());
      const float lr = schedule.At(step);
      adamw.Step(model.trainable(), model.grads(), lr, ClipScale(norm, 1.0f));
      if (step % 5 == 0 || step == steps - 1) {
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("step: %d  loss: %.4f  grad_norm: %.3f  lr: %.2e  docs: %zu  tok/s: %.0f\n",
                    step, loss, norm, lr, b.cu.size() - 1, (step + 1) * capacity / secs);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_synthetic: %s\n", e.what());
    return 1;
  }
  return 0;
}
