// bench/offload_overlap: how much of the offloaded AdamW step's I/O and compute overlap
// (docs/BENCHMARKS-offload-memory.md; protocol: the offload notes' section 5(c)).
//
//   build/bench/offload_overlap [--tensors 8] [--rows 4096] [--cols 4096] [--reps 5]
//       [--sub-group 2097152] [--buffers 3] [--dir /var/tmp]
//
// Four runs over the same parameters (f32, `tensors` of rows x cols, gradients in RAM), each
// repeated --reps times in the order below, so that they see the same machine noise; medians:
//   T_mem   all state in RAM (InMemoryOptimizerStateStore): AdamW over every sub-group, no I/O;
//   T_comp  what the store's caller thread computes per sub-group, with no I/O: AdamW on state
//           streamed through `buffers` warm staging buffers in RAM, then the master weights
//           copied to the compute parameters (OffloadedOptimizerStateStore::Compute's work);
//   T_io    OffloadedOptimizerStateStore (nvme) with the AdamW replaced by a no-op visitor:
//           every sub-group read and written back through the same pipeline;
//   T_off   the full offloaded step: OffloadedOptimizerStateStore::Visit(kUpdate) with AdamW.
// Figures: T_off / max(T_io, T_comp) (goal <= 1.10), the overlap efficiency
// eta = (T_comp + T_io - T_off) / min(T_comp, T_io) (goal >= 0.9), T_off / T_mem (expected near
// T_io / T_mem on this I/O-bound machine), and the store's own OverlapEfficiency() of the T_off
// runs (the same formula over its engine-busy and compute times, clamped to [0, 1]).
// Nothing is pinned to a core: the engine's I/O thread and the caller share the machine's cores.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "offload/optimizer_store.h"
#include "offload/pinned_arena.h"
#include "runtime/check.h"
#include "runtime/cpu/vec.h"
#include "runtime/optimizer.h"
#include "runtime/optimizer_state_store.h"
#include "runtime/stats.h"
#include "runtime/tensor.h"

using namespace seqmesh;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Options {
  int64_t tensors = 8, rows = 4096, cols = 4096;
  int reps = 5;
  int64_t sub_group = int64_t{1} << 21;
  int64_t buffers = 3;
  std::string dir = "/var/tmp";
};

struct Times {
  std::vector<double> mem, comp, io, off, store_eta;
};

// AdamW over one sub-group's slices (the optimizer's arithmetic, one thread).
OptimizerStateStore::Visitor AdamW(int64_t& step) {
  return [&step](std::span<const OptimizerSlice> slices) {
    const AdamWStep s = AdamWStepFor(AdamWConfig{}, step, 3e-4f, 1.0f);
    for (const OptimizerSlice& x : slices) cpu::Vec().adamw(x.master, x.grad, x.m, x.v, x.count, s);
  };
}

Times Run(const Options& o) {
  Arena arena("offload_overlap");
  std::vector<Tensor*> p, g;
  for (int64_t t = 0; t < o.tensors; ++t) {
    p.push_back(arena.Add("w" + std::to_string(t), DType::kF32, Shape({o.rows, o.cols})));
    g.push_back(arena.Add("g" + std::to_string(t), DType::kF32, Shape({o.rows, o.cols})));
  }
  arena.Allocate();
  std::vector<Tensor> params, grads;
  for (int64_t t = 0; t < o.tensors; ++t) {
    float* w = p[t]->f32();
    float* d = g[t]->f32();
    for (int64_t i = 0; i < p[t]->numel(); ++i) {
      w[i] = 0.02f * static_cast<float>((i % 97) - 48) / 48.0f;
      d[i] = 1e-3f * static_cast<float>((i * 31 % 101) - 50) / 50.0f;
    }
    params.push_back(*p[t]);
    grads.push_back(*g[t]);
  }

  OffloadConfig config;
  config.optimizer = OffloadDevice::kNvme;
  config.nvme_path = o.dir;
  config.sub_group_size = o.sub_group;
  config.buffer_count = o.buffers;
  OffloadedOptimizerStateStore store(params, config);
  InMemoryOptimizerStateStore in_memory(params, o.sub_group);
  std::printf("state: %s\n", store.Describe().c_str());

  // T_comp's stream: the store's sub-groups, each staged (master | m | v) in one of `buffers`
  // buffers of a pinned arena like the store's, filled once with a valid state.
  const std::vector<std::vector<OptimizerSlice>> groups = SubGroups(params, o.sub_group);
  int64_t largest = 0;
  for (const auto& group : groups) {
    int64_t n = 0;
    for (const OptimizerSlice& s : group) n += s.count;
    largest = std::max(largest, n);
  }
  PinnedArena staging(
      {{"warm staging", 12 * static_cast<size_t>(largest), static_cast<int>(o.buffers)}},
      /*pin=*/true);
  for (int b = 0; b < o.buffers; ++b) {
    std::span<std::byte> buf = staging.buffer("warm staging", b);
    std::memset(buf.data(), 0, buf.size());
  }
  int64_t step = 1;
  const OptimizerStateStore::Visitor adamw = AdamW(step);
  const OptimizerStateStore::Visitor no_op = [](std::span<const OptimizerSlice>) {};
  auto compute_only = [&] {
    for (size_t k = 0; k < groups.size(); ++k) {
      std::vector<OptimizerSlice> slices = groups[k];
      int64_t n = 0;
      for (const OptimizerSlice& s : slices) n += s.count;
      float* base = reinterpret_cast<float*>(
          staging.buffer("warm staging", static_cast<int>(k % o.buffers)).data());
      int64_t at = 0;
      for (OptimizerSlice& s : slices) {
        s.master = base + at;
        s.m = base + n + at;
        s.v = base + 2 * n + at;
        s.grad = grads[s.tensor].f32() + s.begin;
        at += s.count;
      }
      adamw(slices);
      for (const OptimizerSlice& s : slices)
        std::memcpy(params[s.tensor].f32() + s.begin, s.master, s.count * sizeof(float));
    }
  };

  // Warm-up: the offloaded state starts (written, nothing read), the moments in RAM are touched.
  store.Visit(params, grads, StateAccess::kUpdate, adamw);
  in_memory.Visit(params, grads, StateAccess::kUpdate, adamw);
  compute_only();
  store.TakeStats();

  Times times;
  for (int rep = 0; rep < o.reps; ++rep) {
    ++step;
    double t0 = Now();
    in_memory.Visit(params, grads, StateAccess::kUpdate, adamw);
    times.mem.push_back(Now() - t0);
    t0 = Now();
    compute_only();
    times.comp.push_back(Now() - t0);
    t0 = Now();
    store.Visit(params, grads, StateAccess::kUpdate, no_op);
    times.io.push_back(Now() - t0);
    const OffloadStats io_stats = store.TakeStats();
    t0 = Now();
    store.Visit(params, grads, StateAccess::kUpdate, adamw);
    times.off.push_back(Now() - t0);
    const OffloadStats stats = store.TakeStats();
    times.store_eta.push_back(stats.OverlapEfficiency());
    std::printf(
        "rep %d: T_mem %.3f s  T_comp %.3f s  T_io %.3f s (engine busy %.3f s)  T_off %.3f s "
        "(store: compute %.3f s, engine busy %.3f s, stall %.3f s, %.2f GiB read, %.2f GiB "
        "written)\n",
        rep, times.mem.back(), times.comp.back(), times.io.back(), io_stats.io_seconds,
        times.off.back(), stats.compute_seconds, stats.io_seconds, stats.stall_seconds,
        stats.bytes_read / double(uint64_t{1} << 30),
        stats.bytes_written / double(uint64_t{1} << 30));
    std::fflush(stdout);
  }
  return times;
}

void Print(const Options& o, const Times& t) {
  const double mem = Median(t.mem), comp = Median(t.comp), io = Median(t.io), off = Median(t.off);
  auto spread = [](const std::vector<double>& v) {
    return *std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end());
  };
  const double elems = double(o.tensors) * o.rows * o.cols;
  const double moved = 24.0 * elems / double(uint64_t{1} << 30);  // 12 B in and 12 B out each
  std::printf("medians of %d repetitions, %.1f M parameters, %.2f GiB of state:\n", o.reps,
              elems / 1e6, 12.0 * elems / double(uint64_t{1} << 30));
  std::printf("T_mem  %.3f s (spread %.3f)  %.2f ns/param  (1.00x T_mem, the anchor)\n", mem,
              spread(t.mem), 1e9 * mem / elems);
  std::printf("T_comp %.3f s (spread %.3f)  %.2f ns/param  (%.2fx T_mem)\n", comp, spread(t.comp),
              1e9 * comp / elems, comp / mem);
  std::printf("T_io   %.3f s (spread %.3f)  %.2f ns/param  %.2f GiB/s read+write  (%.2fx T_mem)\n",
              io, spread(t.io), 1e9 * io / elems, moved / io, io / mem);
  std::printf("T_off  %.3f s (spread %.3f)  %.2f ns/param  %.2f GiB/s read+write  (%.2fx T_mem)\n",
              off, spread(t.off), 1e9 * off / elems, moved / off, off / mem);
  std::printf("T_off / max(T_io, T_comp) = %.3f  (goal <= 1.10)\n", off / std::max(io, comp));
  std::printf("eta = (T_comp + T_io - T_off) / min(T_comp, T_io) = %.3f  (goal >= 0.9)\n",
              (comp + io - off) / std::min(comp, io));
  std::printf("T_off / T_mem = %.2f  (T_io / T_mem = %.2f, T_io / T_comp = %.2f)\n", off / mem,
              io / mem, io / comp);
  std::printf("store OverlapEfficiency() of the T_off runs: median %.3f (min %.3f, max %.3f)\n",
              Median(t.store_eta), *std::min_element(t.store_eta.begin(), t.store_eta.end()),
              *std::max_element(t.store_eta.begin(), t.store_eta.end()));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        SM_CHECK(i + 1 < argc) << "offload_overlap: " << a << " needs a value";
        return argv[++i];
      };
      if (a == "--tensors")
        o.tensors = std::stoll(next());
      else if (a == "--rows")
        o.rows = std::stoll(next());
      else if (a == "--cols")
        o.cols = std::stoll(next());
      else if (a == "--reps")
        o.reps = std::stoi(next());
      else if (a == "--sub-group")
        o.sub_group = std::stoll(next());
      else if (a == "--buffers")
        o.buffers = std::stoll(next());
      else if (a == "--dir")
        o.dir = next();
      else
        SM_CHECK(false) << "offload_overlap: unknown flag " << a;
    }
    SM_CHECK(o.tensors >= 1 && o.rows >= 1 && o.cols >= 1 && o.reps >= 1 && o.buffers >= 2)
        << "offload_overlap: --tensors, --rows, --cols, --reps >= 1 and --buffers >= 2";
    Print(o, Run(o));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "offload_overlap: %s\n", e.what());
    return 1;
  }
}
