// Checkpoints: k steps, save, exit (fresh objects), resume, k steps gives bitwise the losses,
// parameters and optimizer moments of 2k uninterrupted steps; only the last K are kept; a
// truncated or corrupt checkpoint is a named error and the previous one still loads.
#include "runtime/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "runtime/layers.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;

// A small training run: synthetic sequences, global batches of 256 tokens packed into
// micro-batches of 128, token-level loss over the global batch, clipping, AdamW.
class TinyRun {
 public:
  TinyRun()
      : model_(Config(), Options()),
        adamw_(model_.params(), AdamWConfig{}),
        sampler_({{1.0, Lengths()}}, 1234, 256) {
    model_.InitRandom(5, 0.1f);
    state_.cursor = sampler_.Start();
  }
  static ModelConfig Config() {
    ModelConfig c;
    c.vocab = 50;
    c.hidden = 32;
    c.layers = 2;
    c.heads = 4;
    c.kv_heads = 2;
    c.ffn = 48;
    return c;
  }
  static ModelOptions Options() {
    ModelOptions o;
    o.max_tokens = 128;
    return o;
  }
  static std::vector<int32_t> Lengths() {
    std::vector<int32_t> l(40);
    for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<int32_t>(10 + (i * 37) % 150);
    return l;
  }
  static int32_t Token(int64_t seq, int64_t i) {
    return static_cast<int32_t>((seq * 7 + i * 3) % 50);
  }

  float Step() {
    std::vector<int64_t> ids;
    for (const BlendedId& b : sampler_.Next(state_.cursor)) ids.push_back(b.sequence);
    const std::vector<int32_t> all = Lengths();
    std::vector<int32_t> lengths;
    float normalizer = 0;
    for (int64_t id : ids) {
      lengths.push_back(all[id]);
      normalizer += static_cast<float>(all[id] - 1);
    }
    const PackResult packed = PackMicroBatches(ids, lengths, 128);
    model_.ZeroGrad();
    float loss = 0;
    for (const MicroBatchPlan& mb : packed.micro_batches) {
      std::vector<int32_t> tokens, targets;
      for (const PackedPiece& p : mb.pieces) {
        const int64_t full = all[p.id];
        for (int64_t i = p.begin; i < p.begin + p.length; ++i) {
          tokens.push_back(Token(p.id, i));
          targets.push_back(i + 1 < full ? Token(p.id, i + 1) : kIgnoreIndex);
        }
      }
      Batch b{tokens.data(), targets.data(), mb.cu_seqlens.data(),
              static_cast<int64_t>(mb.pieces.size()), mb.tokens()};
      loss += model_.Forward(b, normalizer);
      model_.Backward();
    }
    const float scale = ClipScale(GlobalNorm(model_.grads()), 1.0f);
    adamw_.Step(model_.params(), model_.grads(), 1e-3f, scale);
    ++state_.step;
    return loss;
  }

  Model model_;
  AdamW adamw_;
  BlendedBatchSampler sampler_;
  TrainState state_;
};

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("seqmesh_ckpt_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(CheckpointTest, ResumeIsBitwiseIdenticalToAnUninterruptedRun) {
  constexpr int k = 4;
  TinyRun straight;
  std::vector<float> losses;
  for (int i = 0; i < 2 * k; ++i) losses.push_back(straight.Step());

  std::vector<float> resumed_losses;
  {
    TinyRun first;
    for (int i = 0; i < k; ++i) resumed_losses.push_back(first.Step());
    first.state_.rng = 0xfedcba9876543210ull;  // a full 64-bit value survives
    CheckpointManager(dir_, 3).Save(first.model_, first.adamw_, first.state_);
  }  // "exit"
  TinyRun second;
  second.model_.InitRandom(999);  // overwritten by the load
  const auto latest = CheckpointManager(dir_, 3).Latest();
  ASSERT_TRUE(latest.has_value());
  second.state_ = CheckpointManager::Load(*latest, second.model_, second.adamw_);
  EXPECT_EQ(second.state_.step, k);
  EXPECT_EQ(second.state_.rng, 0xfedcba9876543210ull);
  EXPECT_EQ(second.adamw_.step(), k);
  for (int i = 0; i < k; ++i) resumed_losses.push_back(second.Step());

  for (int i = 0; i < 2 * k; ++i) EXPECT_EQ(resumed_losses[i], losses[i]) << "step " << i;
  for (size_t i = 0; i < straight.model_.params().size(); ++i) {
    const Tensor& a = straight.model_.params()[i];
    EXPECT_EQ(0, std::memcmp(a.data(), second.model_.params()[i].data(), a.bytes())) << a.name();
  }
  const auto& ma = straight.adamw_.moments().tensors();
  const auto& mb = second.adamw_.moments().tensors();
  for (size_t i = 0; i < ma.size(); ++i)
    EXPECT_EQ(0, std::memcmp(ma[i].data(), mb[i].data(), ma[i].bytes())) << ma[i].name();
  EXPECT_EQ(straight.state_.cursor, second.state_.cursor);
}

TEST_F(CheckpointTest, KeepsTheLastKAndIgnoresIncompleteOnes) {
  TinyRun run;
  CheckpointManager m(dir_, 2);
  for (int i = 0; i < 4; ++i) {
    run.Step();
    m.Save(run.model_, run.adamw_, run.state_);
  }
  auto all = m.List();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_NE(all[0].find("step-00000003"), std::string::npos);
  EXPECT_NE(all[1].find("step-00000004"), std::string::npos);
  // A step directory without a manifest (a save cut short) is not a checkpoint.
  fs::create_directories(dir_ + "/step-00000009");
  EXPECT_EQ(*m.Latest(), all[1]);
}

TEST_F(CheckpointTest, CorruptOrTruncatedIsANamedErrorAndThePreviousStillLoads) {
  TinyRun run;
  CheckpointManager m(dir_, 3);
  run.Step();
  const std::string good = m.Save(run.model_, run.adamw_, run.state_);
  run.Step();
  const std::string bad = m.Save(run.model_, run.adamw_, run.state_);
  TinyRun other;
  // Flip one byte of the weights.
  {
    std::fstream f(bad + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  try {
    CheckpointManager::Load(bad, other.model_, other.adamw_);
    ADD_FAILURE() << "corrupt checkpoint loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors' does not match its checksum"),
              std::string::npos)
        << e.what();
  }
  // Truncate the state file of another checkpoint.
  run.Step();
  const std::string cut = m.Save(run.model_, run.adamw_, run.state_);
  fs::resize_file(cut + "/train_state.safetensors", 100);
  try {
    CheckpointManager::Load(cut, other.model_, other.adamw_);
    ADD_FAILURE() << "truncated checkpoint loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has 100 bytes, the manifest says"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(CheckpointManager::Load(good, other.model_, other.adamw_).step, 1);
}

}  // namespace
}  // namespace seqmesh
