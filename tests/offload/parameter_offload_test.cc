// Parameter offload (issue 15, item 1): the model's weights on SSD between uses. Oracles: the
// same model trained with its weights in memory (losses, gradients and weights bit for bit over
// several steps, tied and untied embeddings, checkpointed layers included), and the kernel's own
// account of which pages of the parameter arena are resident (mincore): after a capture only
// the pages a group shares with a neighbour, and during a pass only the groups acquired.
#include "offload/parameter_offload.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "offload/optimizer_store.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "tests/offload/offload_test_util.h"
#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

ModelConfig Config(bool tied) {
  ModelConfig c;
  c.vocab = 300;
  c.hidden = 64;
  c.layers = 4;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 192;  // a layer's weights: 4 x 64 x 64 + 3 x 64 x 192 floats (about 200 KiB)
  c.tie_embeddings = tied;
  return c;
}

constexpr int64_t kMaxTokens = 64;

std::string FileBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Resident pages of [p, p + bytes), by the kernel.
size_t ResidentPages(const std::byte* p, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p) / page * page;
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + bytes + page - 1) / page * page;
  std::vector<unsigned char> v((hi - lo) / page);
  if (mincore(reinterpret_cast<void*>(lo), hi - lo, v.data()) != 0) return SIZE_MAX;
  size_t n = 0;
  for (unsigned char c : v) n += c & 1;
  return n;
}

size_t Pages(size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page;
}

// Forwards to the store; after each Acquire checks that no group but the acquired ones has more
// than its two boundary pages resident.
class CheckingStore final : public ParameterStore {
 public:
  explicit CheckingStore(OffloadedParameterStore& s) : s_(s), held_(s.num_groups(), false) {}
  std::span<const Tensor> Acquire(int g) override {
    auto out = s_.Acquire(g);
    held_[g] = true;
    for (int o = 0; o < s_.num_groups(); ++o) {
      if (held_[o]) continue;
      const size_t resident = ResidentPages(s_.group_begin(o), s_.group_bytes(o));
      if (resident > 2) worst = std::max(worst, resident);
    }
    ++acquires;
    return out;
  }
  void Release(int g) override {
    held_[g] = false;
    s_.Release(g);
  }
  void Prefetch(int g) override { s_.Prefetch(g); }
  size_t worst = 0;  // the most pages an unacquired group had resident
  int acquires = 0;

 private:
  OffloadedParameterStore& s_;
  std::vector<bool> held_;
};

// The micro-batches: documents of ids below the vocabulary.
struct Docs : testing::Docs {
  Docs(int64_t t, int docs, int salt) : testing::Docs(t, docs, salt, 300) {}
};

struct Trained {
  std::vector<float> losses;
  std::vector<float> grads, weights;  // after the last step
};

// Three steps of two micro-batches each (64 and 37 tokens), AdamW between; with `store`, every
// group is restored around the update and captured after it, as the trainer does.
Trained Train(Model& m, OffloadedParameterStore* store, CheckingStore* check) {
  Trained r;
  AdamWConfig ac;
  AdamW opt(m.params(), ac);
  const Docs a(64, 2, 1), b(37, 1, 2);
  if (store) {
    store->CaptureAll();
    m.UseParameterStore(check);
  }
  for (int step = 0; step < 3; ++step) {
    m.ZeroGrad();
    for (const Docs* d : {&a, &b}) {
      r.losses.push_back(m.Forward(d->View(), 101.0f));
      m.Backward();
    }
    if (store)
      for (int g = 0; g < store->num_groups(); ++g) store->Restore(g);
    opt.Step(m.params(), m.grads(), 1e-2f, 1.0f);
    if (store) store->CaptureAll();
  }
  if (store)
    for (int g = 0; g < store->num_groups(); ++g) store->Restore(g);
  for (const Tensor& g : m.grads()) r.grads.insert(r.grads.end(), g.f32(), g.f32() + g.numel());
  for (const Tensor& p : m.params())
    r.weights.insert(r.weights.end(), p.f32(), p.f32() + p.numel());
  return r;
}

Model Make(bool tied, bool checkpoint) {
  ModelOptions o;
  o.max_tokens = kMaxTokens;
  o.checkpoint_layers.assign(4, checkpoint);
  Model m(Config(tied), o);
  m.InitRandom(11, 0.05f);
  return m;
}

ParameterOffloadOptions Options(const std::string& dir) {
  ParameterOffloadOptions o;
  o.pin = false;
  o.ssd.dir = dir;
  o.ssd.block_bytes = 64 << 10;
  o.ssd.queue_depth = 8;
  return o;
}

TEST(ParameterOffload, TrainsBitwiseAsInMemoryWithOnlyAcquiredGroupsResident) {
  for (bool tied : {false, true}) {
    for (bool checkpoint : {false, true}) {
      testing::ScratchDir dir;
      Model ref = Make(tied, checkpoint);
      const Trained expect = Train(ref, nullptr, nullptr);
      Model m = Make(tied, checkpoint);
      OffloadedParameterStore store(m.params(), m.param_layout(), Options(dir.path()));
      CheckingStore check(store);
      const Trained got = Train(m, &store, &check);
      const std::string what =
          std::string(tied ? "tied" : "untied") + (checkpoint ? ", checkpointed" : "");
      EXPECT_EQ(got.losses, expect.losses) << what;
      ASSERT_EQ(got.grads.size(), expect.grads.size());
      EXPECT_EQ(std::memcmp(got.grads.data(), expect.grads.data(), got.grads.size() * 4), 0)
          << what;
      EXPECT_EQ(std::memcmp(got.weights.data(), expect.weights.data(), got.weights.size() * 4), 0)
          << what;
      // 3 steps x 2 micro-batches x (forward: L + 2 groups, backward: L + 1), a tied head twice.
      EXPECT_EQ(check.acquires, 6 * (2 * 4 + 3 + (tied ? 2 : 0))) << what;
      EXPECT_EQ(check.worst, 0u) << what << ": an unacquired group had pages resident";
      const ParameterOffloadStats s = store.TakeStats();
      EXPECT_GT(s.prefetch_hits, 0u) << what;
      EXPECT_GT(s.bytes_read, 0u);
    }
  }
}

// As the trainer runs it: the weights initialized straight into the store (InitRandom's sweep
// captures each group as it is done), AdamW's state on SSD sweeping the compute parameters it
// writes (each group captured as its last tensor is updated), a checkpoint written through the
// model's sweep; never more than a group or two of weights resident outside a pass.
TEST(ParameterOffload, WithTheOffloadedOptimizerEveryWeightGoesThroughSweeps) {
  testing::ScratchDir dir;
  OffloadConfig oc;
  oc.optimizer = OffloadDevice::kNvme;
  oc.nvme_path = dir.path();
  oc.sub_group_size = 5000;  // sub-groups that straddle tensors and groups
  oc.block_size = 64 << 10;
  oc.queue_depth = 8;
  oc.pin_memory = false;
  auto run = [&](bool offload_params, std::vector<float>& losses) {
    ModelOptions o;
    o.max_tokens = kMaxTokens;
    Model m(Config(false), o);
    std::unique_ptr<OffloadedParameterStore> store;
    if (offload_params) {
      store = std::make_unique<OffloadedParameterStore>(m.params(), m.param_layout(),
                                                        Options(dir.path()));
      m.SetParamAccess(store->Access());
      m.UseParameterStore(store.get());
    }
    m.InitRandom(11, 0.05f);
    size_t most = 0;
    auto resident_groups = [&] {
      size_t n = 0;
      for (int g = 0; g < store->num_groups(); ++g)
        n += ResidentPages(store->group_begin(g), store->group_bytes(g)) > 2;
      most = std::max(most, n);
    };
    if (store) resident_groups();
    OffloadedOptimizerStateStore state(m.params(), oc);
    if (store) state.SetParamAccess(store->Access());
    AdamWOptions ao;
    ao.state = &state;
    AdamW opt(m.params(), AdamWConfig{}, ao);
    const Docs a(64, 2, 1);
    for (int step = 0; step < 3; ++step) {
      m.ZeroGrad();
      losses.push_back(m.Forward(a.View(), 64.0f));
      m.Backward();
      opt.Step(m.params(), m.grads(), 1e-2f, 1.0f);
      if (store) resident_groups();
    }
    const std::string out = dir.path() + (offload_params ? "/off" : "/mem");
    SaveHfModel(m, out, ExportDType::kFloat32);
    if (store) {
      resident_groups();
      EXPECT_EQ(most, 0u) << "groups left resident after a sweep";
    }
    return out + "/model.safetensors";
  };
  std::vector<float> mem_losses, off_losses;
  const std::string mem = run(false, mem_losses), off = run(true, off_losses);
  EXPECT_EQ(mem_losses, off_losses);
  EXPECT_EQ(FileBytes(mem), FileBytes(off));
}

TEST(ParameterOffload, CaptureLeavesOnlyBoundaryPagesAndRestoreIsExact) {
  testing::ScratchDir dir;
  Model m = Make(false, false);
  std::vector<float> before;
  for (const Tensor& p : m.params()) before.insert(before.end(), p.f32(), p.f32() + p.numel());
  OffloadedParameterStore store(m.params(), m.param_layout(), Options(dir.path()));
  size_t all_pages = 0;
  for (int g = 0; g < store.num_groups(); ++g) {
    EXPECT_GE(ResidentPages(store.group_begin(g), store.group_bytes(g)),
              Pages(store.group_bytes(g)) - 1)
        << "group " << g << " before the capture";
    all_pages += Pages(store.group_bytes(g));
  }
  store.CaptureAll();
  for (int g = 0; g < store.num_groups(); ++g) {
    EXPECT_FALSE(store.resident(g));
    EXPECT_LE(ResidentPages(store.group_begin(g), store.group_bytes(g)), 2u) << "group " << g;
  }
  EXPECT_GT(all_pages, 100u);  // the check above means something
  // The bytes read as zero while offloaded (their pages were given back), and come back exact.
  EXPECT_EQ(m.params()[1].f32()[5], 0.0f);
  for (int g = store.num_groups() - 1; g >= 0; --g) store.Restore(g);
  std::vector<float> after;
  for (const Tensor& p : m.params()) after.insert(after.end(), p.f32(), p.f32() + p.numel());
  EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * 4), 0);
  // Drop gives a restored, unchanged group back without writing.
  const uint64_t written = store.TakeStats().bytes_written;
  EXPECT_GT(written, 0u);
  for (int g = 0; g < store.num_groups(); ++g) store.Drop(g);
  EXPECT_EQ(store.TakeStats().bytes_written, 0u);
  EXPECT_TRUE(dir.Entries().empty()) << "the scratch file has a name";
}

TEST(ParameterOffload, ProtocolErrorsAreNamed) {
  testing::ScratchDir dir;
  Model m = Make(false, false);
  OffloadedParameterStore store(m.params(), m.param_layout(), Options(dir.path()));
  EXPECT_TRUE(testing::ThrowsWith([&] { store.Drop(1); }, "which was never captured"));
  store.Acquire(2);
  EXPECT_TRUE(testing::ThrowsWith([&] { store.Acquire(2); }, "acquired twice"));
  EXPECT_TRUE(testing::ThrowsWith([&] { store.Capture(2); }, "while it is acquired"));
  store.Release(2);
  EXPECT_TRUE(testing::ThrowsWith([&] { store.Release(2); }, "which is not acquired"));
  EXPECT_TRUE(testing::ThrowsWith([&] { store.Acquire(99); }, "the model has 6 groups"));
  // A group acquired before any capture stays resident after its Release (nothing on SSD yet).
  EXPECT_TRUE(store.resident(2));
}

}  // namespace
}  // namespace seqmesh
