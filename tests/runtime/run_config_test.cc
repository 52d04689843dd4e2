// Run configuration: file, then dotted overrides, over defaults; unknown keys with the closest
// valid name; type errors; the resolved TOML loads back to the same configuration.
#include "runtime/run_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "tests/runtime/test_util.h"

namespace seqmesh {
namespace {

namespace fs = std::filesystem;

using testing::ThrowsWith;

class RunConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (fs::temp_directory_path() /
             ("seqmesh_cfg_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".toml"))
                .string();
  }
  void TearDown() override { fs::remove(path_); }
  void Write(const std::string& text) { std::ofstream(path_) << text; }
  std::string path_;
};

TEST_F(RunConfigTest, OverridesWinOverTheFileWhichWinsOverDefaults) {
  Write(R"(
[model]
vocab = 300
hidden = 96
heads = 6
kv_heads = 2
tie_embeddings = true

[training]
steps = 50
grad_clip = 2          # an integer is fine for a number

[optimizer]
lr = 1e-3
warmup_steps = 2
)");
  const RunConfig c =
      RunConfig::Load(path_, {"--training.steps=7", "optimizer.lr=5e-4", "data.path=some/prefix",
                              "--checkpoint.dir=\"runs/x\""});
  EXPECT_EQ(c.model.vocab, 300);
  EXPECT_EQ(c.model.hidden, 96);
  EXPECT_TRUE(c.model.tie_embeddings);
  EXPECT_EQ(c.model.layers, 2);  // default
  EXPECT_EQ(c.training.steps, 7);
  EXPECT_EQ(c.training.grad_clip, 2.0);
  EXPECT_EQ(c.optimizer.lr, 5e-4);
  EXPECT_EQ(c.data.path, "some/prefix");
  EXPECT_EQ(c.checkpoint.dir, "runs/x");
  EXPECT_EQ(c.schedule().total_steps, 7);
}

TEST_F(RunConfigTest, ResolvedTomlLoadsBackToTheSameConfig) {
  const RunConfig a =
      RunConfig::Load("", {"training.steps=33", "model.rope_theta=500000.0", "data.path=a b",
                           "training.checkpoint_activations=true"});
  Write(a.ToToml());
  const RunConfig b = RunConfig::Load(path_);
  EXPECT_EQ(a.ToToml(), b.ToToml());
  EXPECT_EQ(b.training.steps, 33);
  EXPECT_EQ(b.model.rope_theta, 500000.0f);
  EXPECT_EQ(b.data.path, "a b");
  EXPECT_TRUE(b.training.checkpoint_activations);
}

TEST_F(RunConfigTest, UnknownNamesSuggestTheClosest) {
  Write("[training]\nstpes = 3\n");
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load(path_); },
                         "unknown key 'training.stpes'; did you mean 'training.steps'?"));
  Write("[optimiser]\nlr = 3\n");
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load(path_); },
                         "unknown section [optimiser]; did you mean [optimizer]?"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--model.kv_head=2"}); },
                         "command line: unknown key 'model.kv_head'; did you mean "
                         "'model.kv_heads'?"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--training.steps"}); },
                         "must look like section.key=value"));
}

// Names other tools use map to ours (issue 13, item 7: they suggested optimizer.min_lr and
// training.steps).
TEST_F(RunConfigTest, KeysOfOtherToolsSuggestOurs) {
  Write("[optimizer]\nlearning_rate = 3e-4\n");
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load(path_); },
                         "unknown key 'optimizer.learning_rate'; did you mean 'optimizer.lr'?"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--training.batch_size=8"}); },
                         "did you mean 'training.global_batch_tokens'?"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--training.seq_len=8"}); },
                         "did you mean 'training.micro_batch_tokens'?"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--model.num_hidden_layers=8"}); },
                         "did you mean 'model.layers'?"));
}

// A missing or unreadable file names the OS's reason, not "line 0"; a directory is refused
// (issue 13, items 5 and 7: a directory was read as an empty config).
TEST_F(RunConfigTest, MissingFilesAndDirectoriesAreRefusedWithTheReason) {
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("/nonexistent/run.toml"); },
                         "cannot read the config file '/nonexistent/run.toml': No such file or "
                         "directory"));
  const std::string dir = ::testing::TempDir();
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load(dir); }, "is a directory; pass a TOML file"));
}

TEST_F(RunConfigTest, TypeAndValueErrorsNameTheKey) {
  Write("[training]\nsteps = \"many\"\n");
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load(path_); },
                         "training.steps must be an integer, got a string"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"training.steps=1.5"}); },
                         "training.steps must be an integer, got a number"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"training.steps=5"}); },
                         "optimizer.warmup_steps (10) exceeds training.steps (5)"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"model.heads=5"}); },
                         "model.heads (5) must divide model.hidden (64)"));
  EXPECT_TRUE(ThrowsWith(
      [&] { RunConfig::Load("", {"training.global_batch_tokens=100"}); },
      "training.global_batch_tokens (100) must be at least training.micro_batch_tokens (2048)"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"distributed.refit=sometimes"}); },
                         "distributed.refit must be predict, plan or off, got \"sometimes\""));
  EXPECT_EQ(RunConfig::Load("", {"distributed.refit=plan"}).distributed.refit, RefitMode::kPlan);
  Write("[training\nsteps = 1\n");
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load(path_); }, "line 1"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("/nonexistent/x.toml"); }, "x.toml"));
}

// The [offload] section (issue 14): DeepSpeed's vocabulary, a closed set of devices, bounds that
// name the key and the value, and DeepSpeed's `device` key pointing at ours.
TEST_F(RunConfigTest, OffloadSectionParsesAndRefusesBadValues) {
  Write(
      "[offload]\noptimizer = \"nvme\"\nnvme_path = \"/data/swap\"\nbuffer_count = 4\n"
      "sub_group_size = 4096\nblock_size = 8192\nqueue_depth = 32\npin_memory = false\n");
  const RunConfig c = RunConfig::Load(path_);
  EXPECT_EQ(c.offload.optimizer, OffloadDevice::kNvme);
  EXPECT_EQ(c.offload.nvme_path, "/data/swap");
  EXPECT_EQ(c.offload.buffer_count, 4);
  EXPECT_EQ(c.offload.sub_group_size, 4096);
  EXPECT_EQ(c.offload.block_size, 8192);
  EXPECT_EQ(c.offload.queue_depth, 32);
  EXPECT_FALSE(c.offload.pin_memory);
  EXPECT_EQ(RunConfig::Parse(c.ToToml(), "resolved").offload.optimizer, OffloadDevice::kNvme);
  EXPECT_EQ(RunConfig::Load("").offload.optimizer, OffloadDevice::kNone) << "off by default";
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--offload.optimizer=\"ssd\""}); },
                         "offload.optimizer must be none, cpu or nvme, got \"ssd\""));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--offload.buffer_count=1"}); },
                         "offload.buffer_count must be in [2, 64], got 1"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--offload.block_size=5000"}); },
                         "offload.block_size must be a multiple of 4096"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--offload.queue_depth=0"}); },
                         "offload.queue_depth must be in [1, 4096], got 0"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--offload.sub_group_size=10"}); },
                         "offload.sub_group_size must be in [1024, 2^34]"));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        RunConfig::Load("", {"--offload.optimizer=\"nvme\"", "--offload.nvme_path=\"\""});
      },
      "needs offload.nvme_path"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--offload.device=\"nvme\""}); },
                         "did you mean 'offload.optimizer'?"));
}

}  // namespace
}  // namespace seqmesh
