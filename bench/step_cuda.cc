// CUDA backend figures on one GPU (issue 16, bench/step_cuda): cuBLASLt's bf16 GEMM at 8192^3
// (bf16 x bf16 -> f32, fp32 accumulation) and its fp32 GEMM at 4096^3, and the CUDA backend's
// flash attention forward + backward over packed documents (Llama-3-8B's heads: 32 query heads,
// 8 kv heads, head_dim 128) at 8K tokens in 2K documents. One line per figure, with the ratio to
// its anchor: the GEMMs to the GPU's dense peak (--peak-tflops, default the H100/H200's 989 bf16
// dense TFLOP/s; fp32 against 67), attention to the bf16 GEMM measured in the same run (its own
// kernels are fp32 on CUDA cores: DESIGN.md section 8's reference kernel, not the fast one).
// Timings are medians of 10 runs after 3 warm-ups, with CUDA events or a stream sync.
//   step_cuda [--peak-tflops=989] [--tokens=8192] [--doc=2048]
// Needs a GPU: without one it prints the reason and exits 2.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cuda/cublaslt.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/device_arena.h"
#include "runtime/cuda/stream.h"

using namespace seqmesh;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median milliseconds of f() on `stream`, timed by events.
template <typename F>
double GpuMs(const cuda::CudaStream& stream, F f) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> ms;
  cuda::CudaEvent start(true), stop(true);
  for (int i = 0; i < 10; ++i) {
    start.Record(stream);
    f();
    stop.Record(stream);
    stop.Synchronize();
    ms.push_back(stop.ElapsedMs(start));
  }
  return Median(ms);
}

void FillDevice(const Tensor& t, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> host(t.numel());
  for (float& x : host) x = u(rng);
  if (t.dtype() == DType::kBF16) {
    std::vector<uint16_t> b(host.size());
    FloatToBf16(host.data(), b.data(), b.size());
    SM_CHECK_CUDA(cudaMemcpy(t.data(), b.data(), t.bytes(), cudaMemcpyHostToDevice));
  } else {
    SM_CHECK_CUDA(cudaMemcpy(t.data(), host.data(), t.bytes(), cudaMemcpyHostToDevice));
  }
}

double GemmTflops(int64_t n, cuda::GemmInput input, std::mt19937& rng) {
  const DType dt = input == cuda::GemmInput::kBf16 ? DType::kBF16 : DType::kF32;
  cuda::DeviceArena arena("gemm");
  Tensor* a = arena.Add("a", dt, {n, n});
  Tensor* b = arena.Add("b", dt, {n, n});
  Tensor* c = arena.Add("c", DType::kF32, {n, n});
  arena.Allocate();
  FillDevice(*a, rng);
  FillDevice(*b, rng);
  cuda::CudaStream stream;
  cuda::LtGemm gemm(stream.get());
  // y = x W^T, the model's forward layout.
  const double ms = GpuMs(stream, [&] {
    gemm.Run(false, true, n, n, n, 1.0f, a->data(), n, b->data(), n, 0.0f, c->f32(), n, input);
  });
  return 2.0 * n * n * n / (ms * 1e-3) / 1e12;
}

struct AttentionFigures {
  double fwd_ms, bwd_ms, tflops;
};

AttentionFigures AttentionTflops(int64_t tokens, int64_t doc, std::mt19937& rng) {
  const int heads = 32, kv_heads = 8, d = 128;
  const int64_t qw = int64_t{heads} * d, kw = int64_t{kv_heads} * d, width = qw + 2 * kw;
  cuda::DeviceArena arena("attention");
  Tensor* qkv = arena.Add("qkv", DType::kF32, {tokens, width});
  Tensor* out = arena.Add("out", DType::kF32, {tokens, qw});
  Tensor* lse = arena.Add("lse", DType::kF32, {heads, tokens});
  Tensor* dout = arena.Add("dout", DType::kF32, {tokens, qw});
  Tensor* dqkv = arena.Add("dqkv", DType::kF32, {tokens, width});
  arena.Allocate();
  FillDevice(*qkv, rng);
  FillDevice(*dout, rng);
  std::vector<int32_t> cu;
  for (int64_t b = 0; b <= tokens; b += doc) cu.push_back(static_cast<int32_t>(b));
  if (cu.back() != tokens) cu.push_back(static_cast<int32_t>(tokens));
  const std::vector<AttentionSegment> segs =
      SegmentsFromCuSeqlens(cu.data(), static_cast<int64_t>(cu.size()), tokens);
  cuda::CudaBackend backend(ExecutionContext{1});
  float* q = qkv->f32();
  const AttentionIo io{{q, width},       {q + qw, width}, {q + qw + kw, width},
                       {out->f32(), qw}, lse->f32(),      tokens};
  const AttentionDims dims{heads, kv_heads, d};
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  auto time = [&](auto f) {
    for (int i = 0; i < 3; ++i) f();
    backend.Synchronize();
    std::vector<double> ms;
    for (int i = 0; i < 10; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      backend.Synchronize();
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return Median(ms);
  };
  const double fwd = time([&] { backend.AttentionForward(dims, segs, io, scale, true); });
  float* g = dqkv->f32();
  const double bwd = time([&] {
    backend.AttentionBackward(dims, segs, io, {dout->f32(), qw}, {g, width}, {g + qw, width},
                              {g + qw + kw, width}, scale, true);
  });
  // Causal FLOPs as FlashAttention counts them: forward 4 * d * heads * (visible pairs), the
  // backward 2.5 times that.
  double pairs = 0;
  for (const AttentionSegment& s : segs) pairs += 0.5 * s.q_len * (s.q_len + 1);
  const double fwd_flops = 4.0 * d * heads * pairs;
  return {fwd, bwd, 3.5 * fwd_flops / ((fwd + bwd) * 1e-3) / 1e12};
}

}  // namespace

int main(int argc, char** argv) {
  double peak = 989.0;
  int64_t tokens = 8192, doc = 2048;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--peak-tflops=", 0) == 0) {
      peak = std::atof(a.c_str() + 14);
    } else if (a.rfind("--tokens=", 0) == 0) {
      tokens = std::atoll(a.c_str() + 9);
    } else if (a.rfind("--doc=", 0) == 0) {
      doc = std::atoll(a.c_str() + 6);
    } else {
      std::fprintf(stderr,
                   "step_cuda: unknown argument '%s'; use --peak-tflops=N, --tokens=N, --doc=N\n",
                   argv[i]);
      return 1;
    }
  }
  const std::string reason = DeviceUnavailableReason(Device::kCuda);
  if (!reason.empty()) {
    std::fprintf(stderr, "step_cuda: %s\n", reason.c_str());
    return 2;
  }
  try {
    std::printf("device: %s\n", cuda::DescribeDevice(0).c_str());
    std::mt19937 rng(7);
    const double bf16 = GemmTflops(8192, cuda::GemmInput::kBf16, rng);
    std::printf("cublaslt_bf16_gemm_8192^3: %.1f TFLOP/s (%.2fx of the %.0f TFLOP/s peak)\n", bf16,
                bf16 / peak, peak);
    const double fp32 = GemmTflops(4096, cuda::GemmInput::kF32, rng);
    std::printf("cublaslt_fp32_gemm_4096^3: %.1f TFLOP/s (%.2fx of the 67 TFLOP/s fp32 peak)\n",
                fp32, fp32 / 67.0);
    const AttentionFigures att = AttentionTflops(tokens, doc, rng);
    std::printf(
        "attention_fp32_fwd+bwd_%lldtok_doc%lld_h32_kv8_d128: %.2f TFLOP/s (forward %.2f ms, "
        "backward %.2f ms; %.3fx of the bf16 GEMM)\n",
        static_cast<long long>(tokens), static_cast<long long>(doc), att.tflops, att.fwd_ms,
        att.bwd_ms, att.tflops / bf16);
  } catch (const Error& e) {
    std::fprintf(stderr, "step_cuda: %s\n", e.what());
    return 1;
  }
  return 0;
}
