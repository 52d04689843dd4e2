// The offloaded optimizer state (offload/optimizer_store.h): AdamW through it is bitwise AdamW in
// memory, in pinned host memory and on SSD, for any sub-group size and pipeline depth; reads and
// loads see and set exactly the state; the I/O figures count what moved.
#include "offload/optimizer_store.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "runtime/optimizer.h"
#include "tests/offload/offload_test_util.h"

namespace seqmesh {
namespace {

// A directory on a disk file system (O_DIRECT), under the build tree.
std::string ScratchDir() {
  static const testing::ScratchDir dir;
  return dir.path();
}

// Parameters of several shapes (a matrix, a vector, one larger than a sub-group), random values
// and gradients.
struct Problem {
  std::vector<std::vector<float>> p, g;
  std::vector<Tensor> params, grads;
  explicit Problem(uint64_t seed) {
    const std::vector<Shape> shapes = {Shape{37, 19}, Shape{1000}, Shape{3, 20011}, Shape{5}};
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    p.resize(shapes.size());
    g.resize(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      p[i].resize(shapes[i].numel());
      g[i].resize(shapes[i].numel());
      for (float& x : p[i]) x = normal(rng);
    }
    for (size_t i = 0; i < shapes.size(); ++i) {
      params.emplace_back("w" + std::to_string(i), DType::kF32, shapes[i], p[i].data());
      grads.emplace_back("grad.w" + std::to_string(i), DType::kF32, shapes[i], g[i].data());
    }
  }
  void NewGradients(int step) {
    std::mt19937 rng(1000 + step);
    std::normal_distribution<float> normal(0.0f, 0.1f);
    for (auto& t : g)
      for (float& x : t) x = normal(rng);
  }
};

// m then v of every element, in parameter order, as a store hands them out.
std::vector<float> Moments(OptimizerStateStore& store, std::span<const Tensor> params) {
  std::vector<float> m, v;
  store.Visit(params, {}, StateAccess::kRead, [&](std::span<const OptimizerSlice> slices) {
    for (const OptimizerSlice& s : slices) {
      EXPECT_EQ(s.grad, nullptr);
      m.insert(m.end(), s.m, s.m + s.count);
      v.insert(v.end(), s.v, s.v + s.count);
    }
  });
  m.insert(m.end(), v.begin(), v.end());
  return m;
}

OffloadConfig Config(OffloadDevice device, int64_t sub_group, int64_t buffers) {
  OffloadConfig c;
  c.optimizer = device;
  c.nvme_path = ScratchDir();
  c.sub_group_size = sub_group;
  c.buffer_count = buffers;
  c.block_size = 64 << 10;  // several blocks per sub-group: the window is exercised
  c.queue_depth = 4;
  c.pin_memory = true;
  return c;
}

struct Case {
  OffloadDevice device;
  int64_t sub_group;
  int64_t buffers;
};

class OffloadedAdamW : public ::testing::TestWithParam<Case> {};

TEST_P(OffloadedAdamW, IsBitwiseAdamWInMemory) {
  const Case c = GetParam();
  Problem ref(7), off(7);
  AdamW in_memory(ref.params, AdamWConfig{});
  OffloadedOptimizerStateStore store(off.params, Config(c.device, c.sub_group, c.buffers));
  AdamW offloaded(off.params, AdamWConfig{}, {nullptr, &store});
  for (int step = 0; step < 4; ++step) {
    ref.NewGradients(step);
    off.NewGradients(step);
    in_memory.Step(ref.params, ref.grads, 1e-2f, 0.8f);
    offloaded.Step(off.params, off.grads, 1e-2f, 0.8f);
    for (size_t i = 0; i < ref.p.size(); ++i)
      ASSERT_EQ(0, std::memcmp(ref.p[i].data(), off.p[i].data(), ref.p[i].size() * 4))
          << "parameter " << i << " after step " << step + 1;
  }
  std::vector<float> want;
  for (const char* prefix : {"m.", "v."})
    for (const Tensor& t : ref.params) {
      const Tensor& m = in_memory.moments().Find(prefix + t.name());
      want.insert(want.end(), m.f32(), m.f32() + m.numel());
    }
  EXPECT_EQ(want, Moments(store, off.params));
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return Name(info.param.device) + "_subgroup" + std::to_string(info.param.sub_group) + "_buffers" +
         std::to_string(info.param.buffers);
}

INSTANTIATE_TEST_SUITE_P(
    DevicesSubGroupsAndDepths, OffloadedAdamW,
    ::testing::Values(Case{OffloadDevice::kCpu, 1024, 3}, Case{OffloadDevice::kCpu, 1 << 20, 3},
                      Case{OffloadDevice::kNvme, 1024, 2}, Case{OffloadDevice::kNvme, 5000, 3},
                      Case{OffloadDevice::kNvme, 20011, 4}, Case{OffloadDevice::kNvme, 1 << 20, 3}),
    CaseName);

// A load (kOverwrite) sets exactly the moments it is given and takes the compute parameters as
// master weights; a read returns them; the next update starts from them.
TEST(OffloadedOptimizerState, LoadThenReadReturnsTheLoadedStateAndMasterFollowsTheParameters) {
  for (OffloadDevice device : {OffloadDevice::kCpu, OffloadDevice::kNvme}) {
    Problem a(3);
    OffloadedOptimizerStateStore store(a.params, Config(device, 3000, 3));
    AdamW adamw(a.params, AdamWConfig{}, {nullptr, &store});
    a.NewGradients(0);
    adamw.Step(a.params, a.grads, 1e-2f, 1.0f);  // state started
    // A checkpoint load: new parameters, then moments k -> (k, -k) by element index.
    Problem loaded(11);
    for (size_t i = 0; i < a.p.size(); ++i) a.p[i] = loaded.p[i];
    int64_t k = 0;
    store.Visit(a.params, {}, StateAccess::kOverwrite, [&](std::span<const OptimizerSlice> ss) {
      for (const OptimizerSlice& s : ss)
        for (int64_t i = 0; i < s.count; ++i, ++k) {
          EXPECT_EQ(s.master[i], a.p[s.tensor][s.begin + i]) << "master = compute parameters";
          s.m[i] = static_cast<float>(k);
          s.v[i] = static_cast<float>(k) * 0.5f;
        }
    });
    const std::vector<float> moments = Moments(store, a.params);
    ASSERT_EQ(moments.size(), static_cast<size_t>(2 * k)) << Name(device);
    for (int64_t i = 0; i < k; ++i) {
      ASSERT_EQ(moments[i], static_cast<float>(i)) << Name(device) << " m at " << i;
      ASSERT_EQ(moments[k + i], static_cast<float>(i) * 0.5f) << Name(device) << " v at " << i;
    }
    // The same load into an in-memory AdamW steps to the same parameters.
    Problem b(11);
    AdamW ref(b.params, AdamWConfig{});
    ref.set_step(1);
    int64_t j = 0;
    for (const Tensor& t : b.params)
      for (int64_t i = 0; i < t.numel(); ++i, ++j) {
        ref.moments().Find("m." + t.name()).f32()[i] = static_cast<float>(j);
        ref.moments().Find("v." + t.name()).f32()[i] = static_cast<float>(j) * 0.5f;
      }
    a.NewGradients(5);
    b.NewGradients(5);
    adamw.Step(a.params, a.grads, 1e-2f, 1.0f);
    ref.Step(b.params, b.grads, 1e-2f, 1.0f);
    for (size_t i = 0; i < a.p.size(); ++i)
      EXPECT_EQ(a.p[i], b.p[i]) << Name(device) << " parameter " << i;
  }
}

// The state starts from the parameters as they are at the first update or load (a model is
// initialized or loaded after its optimizer is built); a read before that sees zero moments and
// does not start it.
TEST(OffloadedOptimizerState, StartsFromTheParametersOfTheFirstUpdate) {
  Problem ref(21), off(21);
  OffloadedOptimizerStateStore store(off.params, Config(OffloadDevice::kNvme, 4096, 3));
  AdamW offloaded(off.params, AdamWConfig{}, {nullptr, &store});
  for (float x : Moments(store, off.params)) ASSERT_EQ(x, 0.0f);
  Problem later(22);
  off.p = later.p;
  ref.p = later.p;
  AdamW in_memory(ref.params, AdamWConfig{});
  ref.NewGradients(0);
  off.NewGradients(0);
  in_memory.Step(ref.params, ref.grads, 1e-2f, 1.0f);
  offloaded.Step(off.params, off.grads, 1e-2f, 1.0f);
  EXPECT_EQ(ref.p, off.p);
}

// An update moves the whole state in and out once: 12 bytes per element each way (after the
// first, which only writes), and the figures say so.
TEST(OffloadedOptimizerState, AnUpdateReadsAndWritesTwelveBytesPerElement) {
  Problem a(5);
  int64_t elems = 0;
  for (const Tensor& t : a.params) elems += t.numel();
  OffloadedOptimizerStateStore store(a.params, Config(OffloadDevice::kNvme, 8192, 3));
  AdamW adamw(a.params, AdamWConfig{}, {nullptr, &store});
  a.NewGradients(0);
  adamw.Step(a.params, a.grads, 1e-2f, 1.0f);
  const OffloadStats first = store.TakeStats();
  EXPECT_EQ(first.bytes_read, 0u);
  EXPECT_EQ(first.bytes_written, static_cast<uint64_t>(12 * elems));
  adamw.Step(a.params, a.grads, 1e-2f, 1.0f);
  const OffloadStats second = store.TakeStats();
  EXPECT_EQ(second.bytes_read, static_cast<uint64_t>(12 * elems));
  EXPECT_EQ(second.bytes_written, static_cast<uint64_t>(12 * elems));
  EXPECT_GT(second.io_seconds, 0.0);
  EXPECT_GE(second.visit_seconds, second.compute_seconds);
  EXPECT_GE(second.OverlapEfficiency(), 0.0);
  EXPECT_LE(second.OverlapEfficiency(), 1.0);
  EXPECT_EQ(store.TakeStats().bytes_read, 0u) << "TakeStats resets";
}

// The arena holds exactly the staging buffers (nvme) or the state (cpu), each rounded up to
// 4 KiB only, and is locked.
TEST(OffloadedOptimizerState, TheArenaIsExactlyWhatTheLayoutNeeds) {
  Problem a(5);
  int64_t elems = 0;
  for (const Tensor& t : a.params) elems += t.numel();
  const OffloadConfig nvme = Config(OffloadDevice::kNvme, 8192, 3);
  OffloadedOptimizerStateStore ssd(a.params, nvme);
  EXPECT_EQ(ssd.arena().bytes(), 3 * AlignUp(12 * 8192));
  EXPECT_EQ(ssd.arena().bytes(), OffloadedOptimizerStateStore::ArenaBytes(elems, nvme));
  EXPECT_TRUE(ssd.arena().pinned());
  const OffloadConfig cpu = Config(OffloadDevice::kCpu, 8192, 3);
  OffloadedOptimizerStateStore host(a.params, cpu);
  EXPECT_EQ(host.arena().bytes(), OffloadedOptimizerStateStore::ArenaBytes(elems, cpu));
  EXPECT_EQ(host.arena().bytes(),
            (elems / 8192) * AlignUp(12 * 8192) + AlignUp(12 * (elems % 8192)));
}

}  // namespace
}  // namespace seqmesh
