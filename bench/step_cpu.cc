// bench/step_cpu: one rank's training step on CPU against the machine's own anchors.
//
//   build/bench/step_cpu [--threads 2] [--steps 3] [--attn-steps 2] [--memory-sizes
//   2048,8192,32768]
//                        [--peer]   (also run bench/torch_peer.py with /usr/bin/python3)
//                        [--head-chunk N]   (rows of logits at once; 0: the model's 64 MiB)
//
// Figures (one line each, `key: value`, medians over the timed repetitions):
//   fma_peak      the FMA throughput of all threads from a register-only loop (the hardware limit)
//   sgemm         oneDNN sgemm M=N=K=2048 (the anchor for everything below)
//   step          forward + backward + clip + AdamW of a 12-layer Llama (hidden 768, 12 heads,
//                 4 kv heads, ffn 2048, vocab 32000, untied) at 2048 tokens, as one document and
//                 as 16 packed documents of 128: tokens/s, GFLOP/s, ratio to sgemm and to peak
//   attention     flash attention forward + backward, one document of 8192 tokens, same heads
//   attn_memory   peak resident memory added by attention forward + backward at each size
//
// FLOP counts (useful work, no recomputation counted):
//   step      = 6 * N_matmul * tokens + 12 * layers * heads * head_dim * causal_pairs
//               N_matmul = parameters in matrix multiplications (all but the embedding lookup;
//               the lm_head counts); causal_pairs = sum over documents of s(s+1)/2.
//   attention = 12 * heads * head_dim * causal_pairs (forward 4, backward 8: dV, dP, dQ, dK).
#include <immintrin.h>
#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/attention.h"
#include "runtime/backend.h"
#include "runtime/cpu/matmul.h"
#include "runtime/cpu/peak.h"
#include "runtime/cpu/vec.h"
#include "runtime/layers.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"

using namespace seqmesh;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double SgemmGflops(const ExecutionContext& ctx) {
  const int64_t n = 2048;
  std::vector<float> a(n * n), b(n * n), c(n * n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& x : a) x = u(rng);
  for (auto& x : b) x = u(rng);
  Gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n, ctx);
  std::vector<double> rates;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = Now();
    Gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n, ctx);
    rates.push_back(2.0 * n * n * n / (Now() - t0) / 1e9);
  }
  return Median(rates);
}

double CausalPairs(const std::vector<int32_t>& cu) {
  double pairs = 0;
  for (size_t i = 1; i < cu.size(); ++i) {
    const double s = cu[i] - cu[i - 1];
    pairs += s * (s + 1) / 2;
  }
  return pairs;
}

struct StepResult {
  double tokens_per_s, gflops;
  size_t activation_bytes;
};

StepResult BenchStep(const ModelConfig& config, int docs, int64_t tokens, int steps,
                     const std::shared_ptr<Backend>& backend, int64_t head_chunk) {
  ModelOptions options;
  options.max_tokens = tokens;
  options.backend = backend;
  options.head_chunk_tokens = head_chunk;
  Model model(config, options);
  model.InitRandom(1234);
  AdamWConfig oc;
  AdamW adamw(model.trainable(), oc, {backend});
  LrSchedule schedule{3e-4f, 3e-5f, 10, 1000};
  std::vector<int32_t> tok(tokens), tgt(tokens), cu(docs + 1);
  std::mt19937 rng(7);
  for (int64_t i = 0; i < tokens; ++i) tok[i] = static_cast<int32_t>(rng() % config.vocab);
  for (int d = 0; d <= docs; ++d) cu[d] = static_cast<int32_t>(tokens * d / docs);
  for (int d = 0; d < docs; ++d)
    for (int32_t i = cu[d]; i < cu[d + 1]; ++i)
      tgt[i] = i + 1 < cu[d + 1] ? tok[i + 1] : kIgnoreIndex;
  Batch batch{tok.data(), tgt.data(), cu.data(), docs, tokens, nullptr};
  batch.backward_follows = true;  // each Forward is followed by its Backward
  std::vector<double> times;
  for (int s = 0; s <= steps; ++s) {
    const double t0 = Now();
    model.ZeroGrad();
    model.Forward(batch, static_cast<float>(tokens));
    model.Backward();
    const float scale = ClipScale(backend->GlobalNorm(model.grads()), 1.0f);
    adamw.Step(model.trainable(), model.grads(), schedule.At(s), scale);
    if (s > 0) times.push_back(Now() - t0);  // step 0 warms up
  }
  const double t = Median(times);
  const double flops = 6.0 * config.NumMatmulParams() * tokens +
                       12.0 * config.layers * config.heads * config.head_dim() * CausalPairs(cu);
  return {tokens / t, flops / t / 1e9, model.activation_bytes()};
}

struct AttnBuffers {
  std::vector<float> q, k, v, out, lse, dout, dq, dk, dv;
};

double AttentionSeconds(const AttentionDims& dims, int64_t s, int reps, Backend& backend) {
  const int64_t qw = dims.heads * dims.head_dim, kw = dims.kv_heads * dims.head_dim;
  AttnBuffers b;
  std::mt19937 rng(3);
  std::normal_distribution<float> n01;
  auto fill = [&](std::vector<float>& v, int64_t n) {
    v.resize(n);
    for (auto& x : v) x = n01(rng);
  };
  fill(b.q, s * qw);
  fill(b.k, s * kw);
  fill(b.v, s * kw);
  fill(b.dout, s * qw);
  b.out.assign(s * qw, 0);
  b.lse.assign(dims.heads * s, 0);
  std::vector<int32_t> cu = {0, static_cast<int32_t>(s)};
  auto segs = SegmentsFromCuSeqlens(cu.data(), 2, s);
  AttentionIo io{{b.q.data(), qw},   {b.k.data(), kw}, {b.v.data(), kw},
                 {b.out.data(), qw}, b.lse.data(),     s};
  const float scale = 1.0f / std::sqrt(static_cast<float>(dims.head_dim));
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    b.dq.assign(s * qw, 0);
    b.dk.assign(s * kw, 0);
    b.dv.assign(s * kw, 0);
    const double t0 = Now();
    backend.AttentionForward(dims, segs, io, scale);
    backend.AttentionBackward(dims, segs, io, {b.dout.data(), qw}, {b.dq.data(), qw},
                              {b.dk.data(), kw}, {b.dv.data(), kw}, scale);
    times.push_back(Now() - t0);
  }
  return Median(times);
}

// Peak resident set (VmHWM) minus the resident set before, after resetting the peak.
long KiB(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key));
  return -1;
}

double AttentionPeakMiB(const AttentionDims& dims, int64_t s, Backend& backend) {
  {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";  // resets VmHWM to the current RSS
  }
  const long before = KiB("VmRSS:");
  AttentionSeconds(dims, s, 1, backend);
  const long peak = KiB("VmHWM:");
  return (peak - before) / 1024.0;
}

std::vector<int64_t> ParseList(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

std::string PeerCommand(int threads, int steps) {
  // bench/torch_peer.py next to this source file's folder in the source tree.
  std::string src = __FILE__;
  std::string dir = src.substr(0, src.find_last_of('/'));
  return "/usr/bin/python3 " + dir + "/torch_peer.py --threads " + std::to_string(threads) +
         " --steps " + std::to_string(steps) + " 2>&1";
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, steps = 3, attn_steps = 2;
  bool peer = false;
  int64_t head_chunk = 0;
  std::vector<int64_t> memory_sizes = {2048, 8192, 32768};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "step_cpu: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads")
      threads = std::stoi(value());
    else if (a == "--steps")
      steps = std::stoi(value());
    else if (a == "--attn-steps")
      attn_steps = std::stoi(value());
    else if (a == "--memory-sizes")
      memory_sizes = ParseList(value());
    else if (a == "--peer")
      peer = true;
    else if (a == "--head-chunk")
      head_chunk = std::stoll(value());
    else {
      std::fprintf(stderr,
                   "usage: step_cpu [--threads N] [--steps K] [--attn-steps K] "
                   "[--memory-sizes a,b,c] [--peer] [--head-chunk N]\n");
      return 2;
    }
  }
  // Fixed mmap threshold: freed big buffers go back to the system, so the attention memory
  // figures below see each size's own peak rather than memory kept from an earlier size.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  const ExecutionContext ctx{threads};
  const std::shared_ptr<Backend> backend = MakeBackend(Device::kCpu, ctx);
  std::printf("threads: %d\nvec_isa: %s\n", threads, cpu::Vec().isa);

  const double peak = MeasureFmaPeakGflops(threads);
  const double sgemm = SgemmGflops(ctx);
  std::printf("fma_peak_gflops: %.1f\n", peak);
  std::printf("sgemm_2048_gflops: %.1f  (%.2f of fma peak)\n", sgemm, sgemm / peak);

  ModelConfig config;
  config.vocab = 32000;
  config.hidden = 768;
  config.layers = 12;
  config.heads = 12;
  config.kv_heads = 4;
  config.ffn = 2048;
  std::printf("model: params %.1fM, matmul params %.1fM\n", config.NumParams() / 1e6,
              config.NumMatmulParams() / 1e6);
  for (int docs : {1, 16}) {
    const StepResult r = BenchStep(config, docs, 2048, steps, backend, head_chunk);
    std::printf(
        "step docs=%d tokens=2048: tokens_per_s %.1f  gflops %.1f  ratio_to_sgemm %.2f  "
        "ratio_to_peak %.2f  activations_mib %.1f\n",
        docs, r.tokens_per_s, r.gflops, r.gflops / sgemm, r.gflops / peak,
        r.activation_bytes / 1048576.0);
  }

  const AttentionDims dims{12, 4, 64};
  {
    const int64_t s = 8192;
    const double t = AttentionSeconds(dims, s, attn_steps + 1, *backend);
    const double flops = 12.0 * dims.heads * dims.head_dim * (s * (s + 1.0) / 2);
    std::printf("attention s=8192 fwd+bwd: seconds %.3f  gflops %.1f  ratio_to_sgemm %.2f\n", t,
                flops / t / 1e9, flops / t / 1e9 / sgemm);
  }
  for (int64_t s : memory_sizes) {
    const double mib = AttentionPeakMiB(dims, s, *backend);
    const double naive = dims.heads * static_cast<double>(s) * s * 4 / (1 << 20);
    std::printf(
        "attn_memory s=%ld: peak_added_mib %.1f  mib_per_1k_tokens %.2f  (an s x s score "
        "matrix per head would be %.0f MiB)\n",
        static_cast<long>(s), mib, mib / (s / 1024.0), naive);
  }

  if (peer) {
    std::fflush(stdout);
    FILE* p = popen(PeerCommand(threads, steps).c_str(), "r");
    char line[512];
    while (p && std::fgets(line, sizeof line, p)) std::printf("%s", line);
    if (p) pclose(p);
  }
  return 0;
}
