// bench/offload_memory: peak host memory of an offloaded AdamW step, per way of staging the state
// (docs/BENCHMARKS-offload-memory.md; protocol: the offload notes' section 5(b)).
//
//   build/bench/offload_memory [--layers 2] [--hidden 4096] [--ffn 11008] [--vocab 32000]
//       [--steps 3] [--drift-steps 50] [--drift-layers 2] [--drift-hidden 1024]
//       [--drift-ffn 2752] [--sub-group 2097152] [--grad-dtype f32|bf16] [--dir /var/tmp]
//       [--variants naive,deepspeed,pow2,arena,arena-materialized] [--no-drift]
//
// Workload: a Llama-like tensor mix (per block q, k, v, o of hidden x hidden, gate, up, down of
// hidden x ffn, two norms of hidden; plus an embedding of vocab x hidden). AdamW's fp32 master
// weights and both moments are on SSD (12 B/element), one SsdEngine extent per sub-group of at
// most S elements (sub-groups never straddle a tensor, so a tensor's state is its extents in a
// row); the gradients are one flat buffer in RAM (f32, or bf16 widened per sub-group). A step:
// overflow check and gradient norm over the flat gradient, then for every sub-group read state ->
// AdamW -> write state.
//
// Variants (same engine, same S, same check unless named), each in a fresh child process (this
// program re-executed with --variant) so that VmHWM belongs to the variant alone:
//   naive               per tensor and per step: posix_memalign + mlock of the tensor's whole
//                       state (12 B x numel), its sub-groups read into it, updated and written
//                       back, then munlock + free (DeepSpeed-like per-tensor swapping);
//   deepspeed           DeepSpeed's SwapBufferManager: count = 4 fp32 buffers of the largest
//                       sub-group (param, m, v and the gradient buffer of
//                       PartitionedOptimizerSwapper), locked once; one sub-group at a time,
//                       synchronous read, update, write (pipeline_read/write off, the default);
//   pow2                naive with every request rounded up to the next power of two and the
//                       blocks cached, never freed (torch's CachingHostAllocator, per size class);
//   arena               one PinnedArena of buffer_count = 3 exact-size staging buffers of the
//                       largest sub-group, registered with the engine; read g+1 || update g ||
//                       write g-1, as OffloadedOptimizerStateStore's nvme pipeline;
//   arena-materialized  arena, plus DeepSpeed stage 3's has_overflow: isinf(flat).any() then
//                       isnan(flat).any(), each a full-size bool temporary (the ablation of the
//                       fused check every other variant uses: one pass, sum of squares, no
//                       temporaries, finite iff the sum is).
//
// Memory is read from /proc/self/status: VmHWM per step (reset with clear_refs = 5 at each step's
// start), and VmRSS, RssAnon and VmLck sampled every 10 ms by a thread. "baseline" is VmRSS once
// the gradients are resident and before any staging memory exists; staging = peak - baseline.
//
// Figures: peak RSS and VmLck per variant (big config), the ratios arena/naive (goal <= 0.4),
// pow2/arena, deepspeed/arena, the checks' peak delta per gradient element, VmLck of the arena
// against its configured size (goal: +- 1 page), and the drift of the per-step peak over
// --drift-steps steps of the small config (goal: < 1% for the arena).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "offload/pinned_arena.h"
#include "offload/ssd_engine.h"
#include "runtime/check.h"
#include "runtime/cpu/vec.h"
#include "runtime/dtype.h"
#include "runtime/optimizer.h"
#include "runtime/stats.h"

using namespace seqmesh;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

enum class Variant { kNaive, kDeepSpeed, kPow2, kArena, kArenaMaterialized };
constexpr Variant kAllVariants[] = {Variant::kNaive, Variant::kDeepSpeed, Variant::kPow2,
                                    Variant::kArena, Variant::kArenaMaterialized};

const char* VariantName(Variant v) {
  switch (v) {
    case Variant::kNaive:
      return "naive";
    case Variant::kDeepSpeed:
      return "deepspeed";
    case Variant::kPow2:
      return "pow2";
    case Variant::kArena:
      return "arena";
    case Variant::kArenaMaterialized:
      return "arena-materialized";
  }
  return "?";
}

Variant ParseVariant(const std::string& name) {
  for (Variant v : kAllVariants)
    if (name == VariantName(v)) return v;
  SM_CHECK(false) << "offload_memory: unknown variant '" << name
                  << "' (naive, deepspeed, pow2, arena or arena-materialized)";
  __builtin_unreachable();
}

constexpr int kDeepSpeedBuffers = 4;  // offload_optimizer.buffer_count's default
constexpr int kArenaBuffers = 3;      // offload.buffer_count's default

// The tensor mix and how the state is staged: what the parent passes to each child.
struct Config {
  int64_t layers = 2, hidden = 4096, ffn = 11008, vocab = 32000;
  int64_t sub_group = int64_t{1} << 21;
  int steps = 3;
  DType grad_dtype = DType::kF32;
  std::string dir = "/var/tmp";
};

struct TensorSpec {
  std::string name;
  int64_t numel = 0;
  bool decay = true;  // weight decay applies (ndim >= 2)
};

struct Group {
  size_t tensor = 0;
  int64_t begin = 0;      // in the tensor
  int64_t flat = 0;       // in the flat gradient
  int64_t elems = 0;      // n: the extent holds master | m | v, 12n bytes
  int64_t in_tensor = 0;  // byte offset of its state in a tensor-sized staging buffer
};

struct Layout {
  std::vector<TensorSpec> tensors;
  std::vector<Group> groups;
  std::vector<std::pair<int, int>> groups_of;  // tensor -> [first, last) group
  int64_t elems = 0;
  int64_t largest_group = 0;
  int64_t largest_tensor = 0;
};

Layout MakeLayout(const Config& c) {
  SM_CHECK(c.sub_group > 0 && c.sub_group % 1024 == 0)
      << "--sub-group must be a positive multiple of 1024 elements (12 B each keeps every "
         "sub-group's state 4 KiB aligned in a tensor-sized buffer), got "
      << c.sub_group;
  Layout l;
  l.tensors.push_back({"embedding", c.vocab * c.hidden, true});
  for (int64_t b = 0; b < c.layers; ++b) {
    const std::string p = "layer" + std::to_string(b) + ".";
    for (const char* n : {"q", "k", "v", "o"}) l.tensors.push_back({p + n, c.hidden * c.hidden});
    for (const char* n : {"gate", "up", "down"}) l.tensors.push_back({p + n, c.hidden * c.ffn});
    l.tensors.push_back({p + "attn_norm", c.hidden, false});
    l.tensors.push_back({p + "mlp_norm", c.hidden, false});
  }
  for (size_t t = 0; t < l.tensors.size(); ++t) {
    const int first = static_cast<int>(l.groups.size());
    for (int64_t b = 0; b < l.tensors[t].numel; b += c.sub_group) {
      Group g;
      g.tensor = t;
      g.begin = b;
      g.flat = l.elems + b;
      g.elems = std::min(c.sub_group, l.tensors[t].numel - b);
      g.in_tensor = 12 * b;
      l.largest_group = std::max(l.largest_group, g.elems);
      l.groups.push_back(g);
    }
    l.groups_of.push_back({first, static_cast<int>(l.groups.size())});
    l.elems += l.tensors[t].numel;
    l.largest_tensor = std::max(l.largest_tensor, l.tensors[t].numel);
  }
  return l;
}

// ---------------------------------------------------------------------------------------------
// Child: one variant.

// Locks `bytes` fresh from posix_memalign (page aligned): what DeepSpeed's page_alloc.cpp does.
std::byte* LockedAlloc(size_t bytes) {
  void* p = nullptr;
  SM_CHECK(posix_memalign(&p, kOffloadAlignment, bytes) == 0)
      << "offload_memory: posix_memalign of " << bytes << " bytes failed";
  SM_CHECK(mlock(p, bytes) == 0) << "offload_memory: mlock of " << bytes
                                 << " bytes failed: " << std::strerror(errno)
                                 << " (run as root or raise `ulimit -l`)";
  return static_cast<std::byte*>(p);
}
void LockedFree(std::byte* p, size_t bytes) {
  munlock(p, bytes);
  std::free(p);
}

// torch's CachingHostAllocator as far as memory goes: a request is rounded up to the next power
// of two and served from that size class's free list, else allocated and locked; a freed block
// goes back to its list and stays locked.
class Pow2HostCache {
 public:
  ~Pow2HostCache() {
    for (auto& [bytes, blocks] : free_)
      for (std::byte* b : blocks) LockedFree(b, bytes);
  }
  std::byte* Get(size_t bytes) {
    std::vector<std::byte*>& list = free_[std::bit_ceil(bytes)];
    if (list.empty()) return LockedAlloc(std::bit_ceil(bytes));
    std::byte* b = list.back();
    list.pop_back();
    return b;
  }
  void Put(std::byte* b, size_t bytes) { free_[std::bit_ceil(bytes)].push_back(b); }

 private:
  std::map<size_t, std::vector<std::byte*>> free_;
};

// The highest VmRSS, RssAnon and VmLck seen since the last Reset, every 10 ms.
class MemorySampler {
 public:
  MemorySampler() : thread_([this] { Run(); }) {}
  ~MemorySampler() {
    stop_ = true;
    thread_.join();
  }
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    max_ = ReadProcessMemory();
  }
  ProcessMemory Max() {
    Sample();
    std::lock_guard<std::mutex> lock(mu_);
    return max_;
  }

 private:
  void Sample() {
    const ProcessMemory m = ReadProcessMemory();
    std::lock_guard<std::mutex> lock(mu_);
    max_.vm_rss = std::max(max_.vm_rss, m.vm_rss);
    max_.rss_anon = std::max(max_.rss_anon, m.rss_anon);
    max_.vm_lck = std::max(max_.vm_lck, m.vm_lck);
  }
  void Run() {
    while (!stop_) {
      Sample();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  std::mutex mu_;
  ProcessMemory max_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Resets VmHWM to the current RSS (Linux >= 4.0).
void ResetPeakRss() {
  const int fd = open("/proc/self/clear_refs", O_WRONLY);
  SM_CHECK(fd >= 0 && write(fd, "5", 1) == 1)
      << "offload_memory: cannot reset VmHWM through /proc/self/clear_refs";
  close(fd);
}

// Keeps the compiler from eliding a temporary the ablation exists to measure.
void Escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

// One child process: the gradients, the engine with the state on it, and the variant's staging.
class OffloadedStep {
 public:
  OffloadedStep(const Config& config, Variant variant)
      : config_(config),
        variant_(variant),
        layout_(MakeLayout(config)),
        uses_arena_(variant == Variant::kArena || variant == Variant::kArenaMaterialized) {}

  // The gradients resident, the state written once; returns the baseline RSS (no staging yet).
  size_t Prepare() {
    const size_t elem_bytes = DTypeSize(config_.grad_dtype);
    grad_bytes_ = AlignUp(static_cast<size_t>(layout_.elems) * elem_bytes);
    void* g =
        mmap(nullptr, grad_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    SM_CHECK(g != MAP_FAILED) << "offload_memory: cannot map " << grad_bytes_
                              << " bytes of gradients";
    grads_ = static_cast<std::byte*>(g);
    for (int64_t i = 0; i < layout_.elems; ++i) {
      const float x =
          (static_cast<float>((i * 2654435761u >> 8) & 0xffff) / 65536.0f - 0.5f) * 1e-3f;
      if (config_.grad_dtype == DType::kF32)
        reinterpret_cast<float*>(grads_)[i] = x;
      else
        reinterpret_cast<uint16_t*>(grads_)[i] = FloatToBf16(x);
    }
    if (config_.grad_dtype == DType::kBF16)  // the widened gradients of one sub-group
      widened_.assign(static_cast<size_t>(layout_.largest_group), 0.0f);
    const size_t baseline = ReadProcessMemory().vm_rss;

    // The arena before the engine, so that its buffers are registered (as in the store).
    if (uses_arena_)
      arena_ = PinnedArena(
          {{"sub-group staging", 12 * static_cast<size_t>(layout_.largest_group), kArenaBuffers}},
          /*pin=*/true);
    SsdEngineOptions options;
    options.dir = config_.dir;
    std::vector<size_t> extents;
    for (const Group& g : layout_.groups) extents.push_back(12 * static_cast<size_t>(g.elems));
    engine_ = std::make_unique<SsdEngine>(options, extents, uses_arena_ ? &arena_ : nullptr);
    if (variant_ == Variant::kDeepSpeed) {
      deepspeed_bytes_ =
          kDeepSpeedBuffers * AlignUp(4 * static_cast<size_t>(layout_.largest_group));
      deepspeed_ = LockedAlloc(deepspeed_bytes_);
    }
    WriteInitialState();
    return baseline;
  }

  ~OffloadedStep() {
    if (engine_) engine_->WaitAll();
    engine_.reset();
    if (deepspeed_) LockedFree(deepspeed_, deepspeed_bytes_);
    if (grads_) munmap(grads_, grad_bytes_);
  }

  const std::string& engine_description() const { return engine_->description(); }
  uint64_t state_bytes() const { return engine_->file_bytes(); }
  size_t configured_lock() const {
    return uses_arena_ ? arena_.bytes() : variant_ == Variant::kDeepSpeed ? deepspeed_bytes_ : 0;
  }

  // One optimizer step (number k, 1-based).
  void Step(int k) {
    const double norm = std::sqrt(CheckAndSquares());
    const AdamWStep decay = AdamWStepFor(AdamWConfig{}, k, 3e-4f, ClipScale(norm, 1.0f));
    AdamWStep no_decay = decay;
    no_decay.weight_decay = 0;
    auto update = [&](const Group& g, std::byte* region) {
      float* master = reinterpret_cast<float*>(region);
      const int64_t n = g.elems;
      cpu::Vec().adamw(master, Grad(g), master + n, master + 2 * n, n,
                       layout_.tensors[g.tensor].decay ? decay : no_decay);
    };
    switch (variant_) {
      case Variant::kNaive:
      case Variant::kPow2:
        PerTensor(update);
        break;
      case Variant::kDeepSpeed:
        for (size_t g = 0; g < layout_.groups.size(); ++g) {  // synchronous, one at a time
          engine_->Wait(engine_->Read(static_cast<int>(g), deepspeed_));
          update(layout_.groups[g], deepspeed_);
          engine_->Wait(
              engine_->Write(static_cast<int>(g), deepspeed_, 12 * layout_.groups[g].elems));
        }
        break;
      case Variant::kArena:
      case Variant::kArenaMaterialized:
        Pipelined(update);
        break;
    }
  }

 private:
  // Master = a small pattern, m = v = 0, through one unlocked buffer freed before the baseline
  // matters (its pages are gone by the first step).
  void WriteInitialState() {
    const size_t bytes = AlignUp(12 * static_cast<size_t>(layout_.largest_group));
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    SM_CHECK(p != MAP_FAILED) << "offload_memory: cannot map the initial-state buffer";
    float* f = static_cast<float*>(p);
    for (size_t g = 0; g < layout_.groups.size(); ++g) {
      const int64_t n = layout_.groups[g].elems;
      for (int64_t i = 0; i < n; ++i) f[i] = 0.02f * static_cast<float>((i % 97) - 48) / 48.0f;
      std::memset(f + n, 0, 8 * n);
      engine_->Wait(engine_->Write(static_cast<int>(g), static_cast<std::byte*>(p), 12 * n));
    }
    munmap(p, bytes);
  }

  const float* Grad(const Group& g) {
    if (config_.grad_dtype == DType::kF32) return reinterpret_cast<const float*>(grads_) + g.flat;
    Bf16ToFloat(reinterpret_cast<const uint16_t*>(grads_) + g.flat, widened_.data(), g.elems);
    return widened_.data();
  }

  // The overflow check and the squared norm. Fused: one pass of sum_squares over the gradient in
  // chunks (inf or NaN anywhere makes the sum non-finite), nothing allocated. The ablation adds
  // DeepSpeed stage 3's isinf(flat).any(), then isnan(flat).any(): one bool per element each,
  // the first freed before the second (the Python temporary dies after .any()).
  double CheckAndSquares() {
    const int64_t n = layout_.elems;
    bool overflow = false;
    if (variant_ == Variant::kArenaMaterialized) {
      for (int pass = 0; pass < 2; ++pass) {
        bool* mask = static_cast<bool*>(std::malloc(n));
        SM_CHECK(mask) << "offload_memory: cannot allocate the " << n << "-byte overflow mask";
        Escape(mask);
        for (int64_t i = 0; i < n; ++i) {
          const float x = config_.grad_dtype == DType::kF32
                              ? reinterpret_cast<const float*>(grads_)[i]
                              : Bf16ToFloat(reinterpret_cast<const uint16_t*>(grads_)[i]);
          mask[i] = pass == 0 ? std::isinf(x) : std::isnan(x);
        }
        Escape(mask);
        overflow = overflow || std::any_of(mask, mask + n, [](bool b) { return b; });
        std::free(mask);
      }
    }
    double squares = 0;
    constexpr int64_t kChunk = 1 << 16;
    std::vector<float> chunk(config_.grad_dtype == DType::kBF16 ? kChunk : 0);
    for (int64_t b = 0; b < n; b += kChunk) {
      const int64_t len = std::min(kChunk, n - b);
      const float* x = reinterpret_cast<const float*>(grads_) + b;
      if (config_.grad_dtype == DType::kBF16) {
        Bf16ToFloat(reinterpret_cast<const uint16_t*>(grads_) + b, chunk.data(), len);
        x = chunk.data();
      }
      squares += cpu::Vec().sum_squares(x, len);
    }
    SM_CHECK(!overflow && std::isfinite(squares)) << "offload_memory: the gradients overflowed";
    return squares;
  }

  // naive and pow2: each tensor's whole state staged at once. Its sub-groups' reads are all
  // issued, each is updated as it arrives and written back; the buffer goes once all are written.
  template <typename Update>
  void PerTensor(const Update& update) {
    for (size_t t = 0; t < layout_.tensors.size(); ++t) {
      const size_t bytes = 12 * static_cast<size_t>(layout_.tensors[t].numel);
      std::byte* buffer = variant_ == Variant::kPow2 ? pow2_.Get(bytes) : LockedAlloc(bytes);
      const auto [first, last] = layout_.groups_of[t];
      std::vector<SsdEngine::Ticket> reads, writes;
      for (int g = first; g < last; ++g)
        reads.push_back(engine_->Read(g, buffer + layout_.groups[g].in_tensor));
      for (int g = first; g < last; ++g) {
        const Group& group = layout_.groups[g];
        engine_->Wait(reads[g - first]);
        update(group, buffer + group.in_tensor);
        writes.push_back(engine_->Write(g, buffer + group.in_tensor, 12 * group.elems));
      }
      for (SsdEngine::Ticket w : writes) engine_->Wait(w);
      if (variant_ == Variant::kPow2)
        pow2_.Put(buffer, bytes);
      else
        LockedFree(buffer, bytes);
    }
  }

  // arena: read g+1 || update g || write g-1 over kArenaBuffers staging buffers (the protocol of
  // OffloadedOptimizerStateStore::VisitNvme).
  template <typename Update>
  void Pipelined(const Update& update) {
    const int groups = static_cast<int>(layout_.groups.size());
    std::vector<std::optional<SsdEngine::Ticket>> writing(kArenaBuffers);
    auto buffer = [&](int g) {
      return arena_.buffer("sub-group staging", g % kArenaBuffers).data();
    };
    auto read = [&](int g) {
      if (auto& w = writing[g % kArenaBuffers]) {
        engine_->Wait(*w);
        w.reset();
      }
      return engine_->Read(g, buffer(g));
    };
    SsdEngine::Ticket next = read(0);
    for (int g = 0; g < groups; ++g) {
      const SsdEngine::Ticket now = next;
      if (g + 1 < groups) next = read(g + 1);
      engine_->Wait(now);
      update(layout_.groups[g], buffer(g));
      writing[g % kArenaBuffers] = engine_->Write(g, buffer(g), 12 * layout_.groups[g].elems);
    }
    for (auto& w : writing)
      if (w) engine_->Wait(*w);
  }

  Config config_;
  Variant variant_;
  Layout layout_;
  bool uses_arena_ = false;
  std::byte* grads_ = nullptr;
  size_t grad_bytes_ = 0;
  std::vector<float> widened_;
  PinnedArena arena_;
  std::unique_ptr<SsdEngine> engine_;
  std::byte* deepspeed_ = nullptr;
  size_t deepspeed_bytes_ = 0;
  Pow2HostCache pow2_;
};

// Runs the variant's steps and prints `key value...` lines for the parent.
int RunChild(const Config& config, Variant variant) {
  OffloadedStep step(config, variant);
  const size_t baseline = step.Prepare();
  std::printf("engine %s\n", step.engine_description().c_str());
  std::printf("state_bytes %llu\n", static_cast<unsigned long long>(step.state_bytes()));
  std::printf("baseline %zu\n", baseline);
  std::printf("configured_lock %zu\n", step.configured_lock());
  MemorySampler sampler;
  for (int k = 1; k <= config.steps; ++k) {
    ResetPeakRss();
    sampler.Reset();
    const double t0 = Now();
    step.Step(k);
    const double seconds = Now() - t0;
    const ProcessMemory hwm = ReadProcessMemory();
    const ProcessMemory max = sampler.Max();
    std::printf("step %d %zu %zu %zu %zu %.3f\n", k, hwm.vm_hwm, max.vm_rss, max.rss_anon,
                max.vm_lck, seconds);
    std::fflush(stdout);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Parent: one child per variant, then the figures.

struct StepMemory {
  size_t hwm = 0, rss = 0, anon = 0, lck = 0;
  double seconds = 0;
};

struct VariantRun {
  Variant variant = Variant::kNaive;
  std::string engine;
  uint64_t state_bytes = 0;
  size_t baseline = 0, configured_lock = 0;
  std::vector<StepMemory> steps;
  size_t PeakHwm() const {
    size_t p = 0;
    for (const StepMemory& s : steps) p = std::max(p, s.hwm);
    return p;
  }
  size_t PeakLck() const {
    size_t p = 0;
    for (const StepMemory& s : steps) p = std::max(p, s.lck);
    return p;
  }
  size_t PeakAnon() const {
    size_t p = 0;
    for (const StepMemory& s : steps) p = std::max(p, s.anon);
    return p;
  }
  double MedianSeconds() const {
    std::vector<double> t;
    for (const StepMemory& s : steps) t.push_back(s.seconds);
    return t.empty() ? 0 : Median(std::move(t));
  }
};

std::vector<std::string> ChildArgs(const Config& c, Variant v) {
  return {"--variant",    VariantName(v),
          "--layers",     std::to_string(c.layers),
          "--hidden",     std::to_string(c.hidden),
          "--ffn",        std::to_string(c.ffn),
          "--vocab",      std::to_string(c.vocab),
          "--sub-group",  std::to_string(c.sub_group),
          "--steps",      std::to_string(c.steps),
          "--grad-dtype", c.grad_dtype == DType::kF32 ? "f32" : "bf16",
          "--dir",        c.dir};
}

// fork + exec of this program with --variant; its stdout is parsed.
VariantRun RunVariant(const Config& config, Variant variant) {
  int out[2];
  SM_CHECK(pipe(out) == 0) << "offload_memory: pipe failed";
  const std::vector<std::string> args = ChildArgs(config, variant);
  const pid_t pid = fork();
  SM_CHECK(pid >= 0) << "offload_memory: fork failed";
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // the child's state file goes with an interrupted parent
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<char*> argv = {const_cast<char*>("offload_memory")};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t r; (r = read(out[0], buf, sizeof buf)) > 0;) text.append(buf, r);
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  SM_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "offload_memory: the " << VariantName(variant) << " child failed (status " << status
      << ")";
  VariantRun run;
  run.variant = variant;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::string key;
    in >> key;
    if (key == "engine") {
      std::getline(in >> std::ws, run.engine);
    } else if (key == "state_bytes") {
      in >> run.state_bytes;
    } else if (key == "baseline") {
      in >> run.baseline;
    } else if (key == "configured_lock") {
      in >> run.configured_lock;
    } else if (key == "step") {
      int k;
      StepMemory s;
      in >> k >> s.hwm >> s.rss >> s.anon >> s.lck >> s.seconds;
      run.steps.push_back(s);
    }
  }
  SM_CHECK(static_cast<int>(run.steps.size()) == config.steps)
      << "offload_memory: the " << VariantName(variant) << " child reported " << run.steps.size()
      << " of " << config.steps << " steps";
  return run;
}

double GiB(double b) { return b / double(uint64_t{1} << 30); }
double MiB(double b) { return b / double(1 << 20); }

const VariantRun* Find(const std::vector<VariantRun>& runs, Variant v) {
  for (const VariantRun& r : runs)
    if (r.variant == v) return &r;
  return nullptr;
}

void PrintRatio(const std::vector<VariantRun>& runs, Variant num, Variant den, const char* goal) {
  const VariantRun* a = Find(runs, num);
  const VariantRun* b = Find(runs, den);
  if (!a || !b) return;
  const double total = double(a->PeakHwm()) / double(b->PeakHwm());
  const double staging =
      double(a->PeakHwm() - a->baseline) / std::max(1.0, double(b->PeakHwm() - b->baseline));
  std::printf("ratio %s/%s: peak RSS %.3fx, staging (peak - baseline) %.3fx%s\n", VariantName(num),
              VariantName(den), total, staging, goal);
}

void PrintPeaks(const Config& config, const std::vector<VariantRun>& runs) {
  const Layout layout = MakeLayout(config);
  std::printf(
      "config: %lld layers, hidden %lld, ffn %lld, vocab %lld: %.1f M parameters, %zu tensors, "
      "%zu sub-groups of <= %lld elements; state on disk %.2f GiB; gradients %s in RAM %.2f "
      "GiB; largest tensor's state %.2f GiB\n",
      (long long)config.layers, (long long)config.hidden, (long long)config.ffn,
      (long long)config.vocab, layout.elems / 1e6, layout.tensors.size(), layout.groups.size(),
      (long long)config.sub_group, GiB(12.0 * layout.elems),
      config.grad_dtype == DType::kF32 ? "f32" : "bf16",
      GiB(double(DTypeSize(config.grad_dtype)) * layout.elems), GiB(12.0 * layout.largest_tensor));
  if (!runs.empty()) std::printf("engine: %s\n", runs.front().engine.c_str());
  const VariantRun* naive = Find(runs, Variant::kNaive);
  for (const VariantRun& r : runs) {
    std::printf(
        "peak_rss %-18s %7.3f GiB (VmHWM, max over %zu steps)  baseline %.3f GiB  staging %8.1f "
        "MiB  RssAnon max %.3f GiB  VmLck max %8.1f MiB  step %.2f s",
        VariantName(r.variant), GiB(r.PeakHwm()), r.steps.size(), GiB(r.baseline),
        MiB(double(r.PeakHwm()) - double(r.baseline)), GiB(r.PeakAnon()), MiB(r.PeakLck()),
        r.MedianSeconds());
    if (naive) std::printf("  (%.3fx naive)", double(r.PeakHwm()) / double(naive->PeakHwm()));
    std::printf("\n");
  }
  for (const VariantRun& r : runs) {
    if (r.configured_lock == 0) continue;
    const double pages = (double(r.PeakLck()) - double(r.configured_lock)) / kOffloadAlignment;
    std::printf("vmlck %-18s %.1f MiB, configured %.1f MiB: %+.0f pages (%.4fx configured)%s\n",
                VariantName(r.variant), MiB(r.PeakLck()), MiB(r.configured_lock), pages,
                double(r.PeakLck()) / double(r.configured_lock),
                r.variant == Variant::kArena ? "  goal: +-1 page" : "");
  }
  PrintRatio(runs, Variant::kArena, Variant::kNaive, "  goal: <= 0.4");
  PrintRatio(runs, Variant::kPow2, Variant::kArena, "  expected 1.3-1.9");
  PrintRatio(runs, Variant::kPow2, Variant::kNaive, "  (the rounding and caching alone)");
  PrintRatio(runs, Variant::kDeepSpeed, Variant::kArena, "");
  const VariantRun* fused = Find(runs, Variant::kArena);
  const VariantRun* mat = Find(runs, Variant::kArenaMaterialized);
  if (fused && mat) {
    const double delta = double(mat->PeakHwm()) - double(fused->PeakHwm());
    std::printf(
        "check_delta: materialized isinf/isnan - fused: %+.1f MiB = %+.3f B per gradient element "
        "(fused adds 0 B; goal: fused ~0, materialized ~1-2 B)\n",
        MiB(delta), delta / double(layout.elems));
  }
}

void PrintDrift(const Config& config, const std::vector<VariantRun>& runs) {
  const Layout layout = MakeLayout(config);
  std::printf(
      "drift config: %lld layers, hidden %lld, ffn %lld, vocab %lld: %.1f M parameters, "
      "state %.2f GiB, %d steps\n",
      (long long)config.layers, (long long)config.hidden, (long long)config.ffn,
      (long long)config.vocab, layout.elems / 1e6, GiB(12.0 * layout.elems), config.steps);
  for (const VariantRun& r : runs) {
    size_t lo = SIZE_MAX, hi = 0;
    for (const StepMemory& s : r.steps) {
      lo = std::min(lo, s.hwm);
      hi = std::max(hi, s.hwm);
    }
    const double first = double(r.steps.front().hwm), last = double(r.steps.back().hwm);
    std::printf(
        "drift %-18s step 1 %8.1f MiB  step %d %8.1f MiB  drift %+.2f%%  (min %.1f, max %.1f "
        "MiB over all steps; VmLck step 1 %.1f, last %.1f MiB; step %.2f s)%s\n",
        VariantName(r.variant), MiB(first), config.steps, MiB(last), 100 * (last - first) / first,
        MiB(lo), MiB(hi), MiB(r.steps.front().lck), MiB(r.steps.back().lck), r.MedianSeconds(),
        r.variant == Variant::kArena ? "  goal: < 1%" : "");
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Config big, drift;
    drift.layers = 2;
    drift.hidden = 1024;
    drift.ffn = 2752;
    drift.steps = 50;
    std::optional<Variant> child;
    std::vector<Variant> variants(std::begin(kAllVariants), std::end(kAllVariants));
    bool run_drift = true;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        SM_CHECK(i + 1 < argc) << "offload_memory: " << a << " needs a value";
        return argv[++i];
      };
      if (a == "--variant")
        child = ParseVariant(next());
      else if (a == "--layers")
        big.layers = std::stoll(next());
      else if (a == "--hidden")
        big.hidden = std::stoll(next());
      else if (a == "--ffn")
        big.ffn = std::stoll(next());
      else if (a == "--vocab")
        big.vocab = std::stoll(next());
      else if (a == "--steps")
        big.steps = std::stoi(next());
      else if (a == "--drift-layers")
        drift.layers = std::stoll(next());
      else if (a == "--drift-hidden")
        drift.hidden = std::stoll(next());
      else if (a == "--drift-ffn")
        drift.ffn = std::stoll(next());
      else if (a == "--drift-steps")
        drift.steps = std::stoi(next());
      else if (a == "--sub-group")
        big.sub_group = drift.sub_group = std::stoll(next());
      else if (a == "--dir")
        big.dir = drift.dir = next();
      else if (a == "--no-drift")
        run_drift = false;
      else if (a == "--grad-dtype") {
        const std::string d = next();
        SM_CHECK(d == "f32" || d == "bf16") << "--grad-dtype is f32 or bf16, got '" << d << "'";
        big.grad_dtype = drift.grad_dtype = d == "f32" ? DType::kF32 : DType::kBF16;
      } else if (a == "--variants") {
        variants.clear();
        std::istringstream in(next());
        for (std::string v; std::getline(in, v, ',');) variants.push_back(ParseVariant(v));
      } else {
        SM_CHECK(false) << "offload_memory: unknown flag " << a;
      }
    }
    SM_CHECK(big.steps >= 1 && drift.steps >= 1) << "offload_memory: --steps must be >= 1";
    if (child) return RunChild(big, *child);

    std::vector<VariantRun> runs;
    for (Variant v : variants) {
      std::fprintf(stderr, "offload_memory: %s ...\n", VariantName(v));
      runs.push_back(RunVariant(big, v));
    }
    PrintPeaks(big, runs);
    std::fflush(stdout);
    if (run_drift) {
      std::vector<VariantRun> drifts;
      for (Variant v : variants) {
        std::fprintf(stderr, "offload_memory: drift %s ...\n", VariantName(v));
        drifts.push_back(RunVariant(drift, v));
      }
      PrintDrift(drift, drifts);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "offload_memory: %s\n", e.what());
    return 1;
  }
}
