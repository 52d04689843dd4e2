// Run configuration: file, then dotted overrides, over defaults; unknown keys with the closest
// valid name; type errors; the resolved TOML loads back to the same configuration.
#include "runtime/run_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

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
  EXPECT_EQ(b.training.checkpoint_activations, CheckpointMode::kAll);
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

// A config is [section] headers and key = value lines with scalar values. Other input is refused
// before toml++ sees it, with the line and column: Debian's toml++ 3.3.0 cannot take some of it
// safely (found by tests/fuzz/fuzz_run_config.cc: its assertions or TOML_UNREACHABLE; undefined
// behaviour in the shared library).
TEST_F(RunConfigTest, InputsTheTomlParserCannotTakeAreRefusedFirst) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"[\x01"
       "checkpoint]\n",
       "line 1, column 2: control character 0x01"},
      {"\xEF\xBB\x9F[model]\n", "starts with the bytes EF BB but not EF BB BF"},
      {"[model]\nhidden = 32\n[\n", "line 3, column 2: a table header's name must follow '['"},
      {"[=model]\n", "line 1, column 2: a table header's name must follow '['"},
      {"[[model]]\n", "line 1, column 2: an array of tables"},
      {"[model]\n\xC3\xA9 = 1\n", "line 2, column 1: a non-ASCII character outside a string"},
      {"[\xE4\xB8\xAD]\n", "line 1, column 2: a non-ASCII character outside a string"},
      {"[data]\npath = \"a\x7f\"\n", "line 2, column 10: control character 0x7F"},
      {"[data]\npath = 2\"\xC3\xA9\"\n", "line 2, column 9: unexpected '\"'"},
      {"[model]\nheads = [}\n", "line 2, column 10: an array holds strings only"},
      {"[model]\nheads = {a = 1}\n", "line 2, column 9: inline tables are not config values"},
      {"[lora]\ntargets = [\"q_proj\", [\"x\"]]\n", "column 22: an array holds strings only"},
      {"[lora]\ntargets = [\"q_proj\"\n", "column 20: an array's strings are separated by ','"},
      {"[data]\npath = \"\"\"a\"\"\"\n", "line 2, column 8: multi-line strings are not"},
      {"[data]\npath = \"a\\q\"\n", "line 2, column 11: a string's backslash must start"},
      {"[data]\npath = \"a\n\"\n", "line 2, column 10: a string must end on its line"},
      {"[data]\npath =\n", "line 2, column 7: a value must follow '='"},
      {"[model]\nheads 4\n", "line 2, column 7: '=' must follow the key"},
  };
  for (const auto& [text, message] : refused) {
    Write(text);
    EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load(path_); }, message)) << text;
    EXPECT_TRUE(ThrowsWith([&] { RunConfig::Parse(text, "x.toml"); }, message)) << text;
  }
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"data.path=a\x01"}); },
                         "command line --data.path: control character 1 at byte 2"));
  // Non-ASCII inside strings and comments, a byte-order mark, CRLF, quoted names, escapes,
  // literal strings and numbers with signs and underscores load; a bare word on the command line
  // is a string.
  Write(
      "\xEF\xBB\xBF# caf\xC3\xA9 \xE4\xB8\xAD\r\n[data]\npath = "
      "\"d\xC3\xA9j\xC3\xA0\\\"[\\u00e9\"\n"
      "[ \"training\" ] # \xF0\x9F\x98\x80\nsteps = +70 # \xF0\x9F\x98\x80\n\n  [distributed]\n"
      "planner = 'naive'\t\n[optimizer]\nlr = 1_0.5e-3\n");
  const RunConfig c = RunConfig::Load(path_);
  EXPECT_EQ(c.data.path, "d\xC3\xA9j\xC3\xA0\"[\xC3\xA9");
  EXPECT_EQ(c.training.steps, 70);
  EXPECT_EQ(c.distributed.planner, PlannerKind::kNaive);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 10.5e-3);
  EXPECT_EQ(RunConfig::Load("", {"data.path=caf\xC3\xA9/[x]"}).data.path, "caf\xC3\xA9/[x]");
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

// Activation checkpointing and offload (issue 15, item 2): checkpoint_activations takes TOML
// booleans and "selective"; the resolved TOML writes booleans back as booleans; the offload keys
// are checked against each other.
TEST_F(RunConfigTest, ActivationCheckpointAndOffloadKeys) {
  EXPECT_EQ(RunConfig::Load("").training.checkpoint_activations, CheckpointMode::kOff);
  Write(
      "[training]\ncheckpoint_activations = \"selective\"\nactivation_memory = 512\n"
      "[offload]\nactivations = \"nvme\"\nnvme_path = \"/data/swap\"\nprefetch_depth = 4\n");
  const RunConfig c = RunConfig::Load(path_);
  EXPECT_EQ(c.training.checkpoint_activations, CheckpointMode::kSelective);
  EXPECT_EQ(c.training.activation_memory, 512);
  EXPECT_EQ(c.offload.activations, OffloadDevice::kNvme);
  EXPECT_EQ(c.offload.prefetch_depth, 4);
  EXPECT_EQ(RunConfig::Parse(c.ToToml(), "resolved").ToToml(), c.ToToml());
  Write("[training]\ncheckpoint_activations = false\n");
  EXPECT_EQ(RunConfig::Load(path_).training.checkpoint_activations, CheckpointMode::kOff);
  const RunConfig on = RunConfig::Load("", {"training.checkpoint_activations=true"});
  EXPECT_NE(on.ToToml().find("checkpoint_activations = true"), std::string::npos) << on.ToToml();
  EXPECT_TRUE(
      ThrowsWith([&] { RunConfig::Load("", {"training.checkpoint_activations=\"some\""}); },
                 "training.checkpoint_activations must be false, true or selective, got \"some\""));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"training.checkpoint_activations=1"}); },
                         "must be a boolean or a string, got an integer"));
  EXPECT_TRUE(ThrowsWith(
      [&] { RunConfig::Load("", {"offload.activations=\"cpu\""}); },
      "offloads the saved inputs of checkpointed layers, but training.checkpoint_activations is "
      "false; set it to true or \"selective\""));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        RunConfig::Load("", {"offload.activations=\"nvme\"", "offload.nvme_path=\"\"",
                             "training.checkpoint_activations=true"});
      },
      "offload.activations = \"nvme\" needs offload.nvme_path"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"offload.prefetch_depth=65"}); },
                         "offload.prefetch_depth must be in [0, 64], got 65"));
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"training.activation_memory=-1"}); },
                         "training.activation_memory must be >= 0 MiB"));
}

// distributed.offload (issue 15, item 3): needs a target in offload.activations, and the plan
// decides which layers offload, so checkpoint_activations stays false.
TEST_F(RunConfigTest, DistributedOffloadKeys) {
  EXPECT_FALSE(RunConfig::Load("").distributed.offload);
  const RunConfig c = RunConfig::Load(
      "", {"distributed.offload=true", "offload.activations=\"nvme\"", "model.layers=4"});
  EXPECT_TRUE(c.distributed.offload);
  EXPECT_EQ(c.offload.activations, OffloadDevice::kNvme);
  EXPECT_EQ(c.training.checkpoint_activations, CheckpointMode::kOff);
  EXPECT_TRUE(RunConfig::Parse(c.ToToml(), "resolved").distributed.offload);
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"distributed.offload=true"}); },
                         "offload.activations' target, which is \"none\"; set "
                         "offload.activations = \"nvme\""));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        RunConfig::Load("", {"distributed.offload=true", "offload.activations=\"nvme\"",
                             "training.checkpoint_activations=\"selective\""});
      },
      "training.checkpoint_activations must be false, got \"selective\""));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        RunConfig::Load("", {"distributed.offload=true", "offload.activations=\"nvme\"",
                             "distributed.planner=\"static\""});
      },
      "that planner's rings never offload; use \"balanced\" or \"naive\""));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        RunConfig::Load(
            "", {"distributed.offload=true", "offload.activations=\"nvme\"", "model.layers=2"});
      },
      "distributed.offload = true needs model.layers >= 3"));
}

// offload.parameters (issue 15, item 1): nvme only, with the optimizer on nvme, fp32, no LoRA.
TEST_F(RunConfigTest, ParameterOffloadKeys) {
  const std::vector<std::string> on = {"offload.parameters=\"nvme\"", "offload.optimizer=\"nvme\""};
  EXPECT_EQ(RunConfig::Load("", on).offload.parameters, OffloadDevice::kNvme);
  EXPECT_EQ(RunConfig::Load("").offload.parameters, OffloadDevice::kNone);
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), on.begin(), on.end());
    return [extra] { RunConfig::Load("", extra); };
  };
  EXPECT_TRUE(ThrowsWith([] { RunConfig::Load("", {"offload.parameters=\"nvme\""}); },
                         "needs offload.optimizer = \"nvme\""));
  EXPECT_TRUE(ThrowsWith([] { RunConfig::Load("", {"offload.parameters=\"cpu\""}); },
                         "on the CPU backend is the memory they are already in"));
  EXPECT_TRUE(ThrowsWith(with({"offload.nvme_path=\"\""}), "needs offload.nvme_path"));
  EXPECT_TRUE(ThrowsWith(with({"training.precision=\"bf16\""}), "is not supported yet"));
  EXPECT_TRUE(ThrowsWith(with({"lora.rank=8"}), "with LoRA (lora.rank = 8) is not supported"));
}

// checkpoint.export_dtype and the RoPE scaling keys (issue 18, item 6): closed sets named in the
// errors, bounds naming the key, and the resolved TOML carrying them (what the workers get).
TEST_F(RunConfigTest, ExportDtypeAndRopeScalingKeys) {
  const RunConfig d = RunConfig::Load("");
  EXPECT_EQ(d.checkpoint.export_dtype, ExportDType::kAuto);
  EXPECT_EQ(d.model.rope_scaling.type, RopeType::kDefault);
  EXPECT_EQ(RunConfig::Load("", {"--checkpoint.export_dtype=\"bfloat16\""}).checkpoint.export_dtype,
            ExportDType::kBfloat16);
  EXPECT_TRUE(
      ThrowsWith([&] { RunConfig::Load("", {"--checkpoint.export_dtype=\"fp16\""}); },
                 "checkpoint.export_dtype must be auto, float32 or bfloat16, got \"fp16\""));
  Write(
      "[model]\nrope_scaling = \"llama3\"\nrope_factor = 32.0\nrope_low_freq_factor = 1.0\n"
      "rope_high_freq_factor = 4.0\nrope_original_max_positions = 8192\n");
  const RunConfig c = RunConfig::Load(path_);
  EXPECT_EQ(c.model.rope_scaling.type, RopeType::kLlama3);
  EXPECT_EQ(c.model.rope_scaling.factor, 32.0);
  EXPECT_EQ(RunConfig::Parse(c.ToToml(), "resolved").model.rope_scaling, c.model.rope_scaling);
  EXPECT_TRUE(ThrowsWith([&] { RunConfig::Load("", {"--model.rope_scaling=\"yarn\""}); },
                         "model.rope_scaling must be default, linear or llama3, got \"yarn\""));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        RunConfig::Load("", {"--model.rope_scaling=\"linear\"", "--model.rope_factor=0.5"});
      },
      "model.rope_factor must be >= 1 for rope_scaling \"linear\", got 0.5"));
}

}  // namespace
}  // namespace seqmesh

namespace seqmesh {
namespace {

TEST(RunConfigLora, SectionParsesRoundTripsAndRefusesBadValues) {
  const RunConfig off = RunConfig::Load("");
  EXPECT_EQ(off.lora.rank, 0);  // LoRA is off unless asked for
  EXPECT_EQ(off.lora.targets.size(), 7u);
  const RunConfig c = RunConfig::Parse(
      "[lora]\nrank = 8\nalpha = 32\ndropout = 0.05\ntargets = [\"q_proj\", 'v_proj', ]\n", "x");
  EXPECT_EQ(c.lora.rank, 8);
  EXPECT_EQ(c.lora.alpha, 32);
  EXPECT_EQ(c.lora.dropout, 0.05);
  EXPECT_EQ(c.lora.targets, (std::vector<std::string>{"q_proj", "v_proj"}));
  const RunConfig back = RunConfig::Parse(c.ToToml(), "resolved");
  EXPECT_EQ(back.lora.targets, c.lora.targets);
  EXPECT_EQ(back.lora.rank, 8);
  const RunConfig o = RunConfig::Load("", {"--lora.rank=4", "--lora.targets=[\"down_proj\"]"});
  EXPECT_EQ(o.lora.targets, std::vector<std::string>{"down_proj"});
  EXPECT_TRUE(testing::ThrowsWith([] { RunConfig::Parse("[lora]\ntargets = \"q_proj\"\n", "x"); },
                                  "lora.targets must be an array of strings, got a string"));
  EXPECT_TRUE(
      testing::ThrowsWith([] { RunConfig::Parse("[lora]\nrank = 4\ntargets = [\"q\"]\n", "x"); },
                          "lora.targets: \"q\" is not a projection of a Llama layer"));
  EXPECT_TRUE(testing::ThrowsWith([] { RunConfig::Load("", {"lora.rank=-1"}); },
                                  "lora.rank must be >= 0 (0: no LoRA), got -1"));
  EXPECT_TRUE(testing::ThrowsWith(
      [] {
        RunConfig::Load("", {"lora.rank=2", "lora.alpha=0"});
      },
      "lora.alpha must be > 0"));
  EXPECT_TRUE(testing::ThrowsWith([] { RunConfig::Load("", {"lora.rnak=2"}); },
                                  "did you mean 'lora.rank'?"));
}

}  // namespace
}  // namespace seqmesh
