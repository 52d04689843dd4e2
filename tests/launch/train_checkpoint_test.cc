// `seqmesh train`'s checkpoints, in process through Train (the world of one on the one step
// path, in the job layout of launch/job_checkpoint.h): a run resumed from its step-4 checkpoint
// ends with bitwise the parameters, optimizer moments, data cursor and metrics of an
// uninterrupted one; only the last K are kept, a directory without a manifest is not a
// checkpoint and a file its manifest does not list is not read; a corrupt or truncated newest
// checkpoint is named, set aside, and the previous one serves. (Moved here from runtime's
// CheckpointManager tests when train moved onto HdpStep.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "launch/job_checkpoint.h"
#include "launch/trainer.h"
#include "runtime/files.h"
#include "runtime/indexed_dataset.h"
#include "runtime/run_config.h"

namespace seqmesh::launch {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

class TrainCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("seqmesh_train_ckpt_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::create_directories(dir_);
    // 40 sequences of 10..159 tokens; those over 128 are cut into pieces.
    IndexedDatasetWriter w(dir_ + "/data", TokenDType::kU16);
    for (int64_t s = 0; s < 40; ++s) {
      std::vector<int32_t> tokens;
      for (int64_t i = 0; i < 10 + (s * 37) % 150; ++i)
        tokens.push_back(static_cast<int32_t>((s * 7 + i * 3) % 50));
      w.Add(tokens);
    }
    w.Finish();
  }
  void TearDown() override { fs::remove_all(dir_); }

  RunConfig Config(const std::string& run, int64_t interval, int64_t keep) const {
    std::ostringstream toml;
    toml << "[model]\nvocab = 50\nhidden = 32\nlayers = 2\nheads = 4\nkv_heads = 2\nffn = 48\n"
         << "[training]\nsteps = 8\nglobal_batch_tokens = 256\nmicro_batch_tokens = 128\n"
         << "threads = 1\nlog_interval = 100\n[optimizer]\nwarmup_steps = 2\n"
         << "[data]\npath = \"" << dir_ << "/data\"\nvalidation_fraction = 0.0\n"
         << "[checkpoint]\ndir = \"" << dir_ << "/" << run << "\"\ninterval = " << interval
         << "\nkeep = " << keep << "\n";
    return RunConfig::Parse(toml.str(), "the test's config");
  }
  std::string Run(const RunConfig& config, bool resume) {
    std::ostringstream out;
    TrainerOptions options;
    options.resume = resume;
    EXPECT_EQ(Train(config, options, out), 0);
    return out.str();
  }
  std::string dir_;
};

TEST_F(TrainCheckpointTest, ResumeIsBitwiseIdenticalToAnUninterruptedRun) {
  Run(Config("a", 4, 3), false);
  const RunConfig b = Config("b", 4, 3);
  Run(b, false);
  // "Exit" after step 4: drop b's later checkpoint, then resume in a fresh Train (the records
  // of steps 5-8 are superseded by the redone ones).
  fs::remove_all(dir_ + "/b/step-00000008");
  const std::string log = Run(b, true);
  EXPECT_NE(log.find("resumed: "), std::string::npos) << log;
  EXPECT_NE(log.find("step-00000004 (step 4, written by 1 rank)"), std::string::npos) << log;
  // Every field but the wall clock, step time, rate and memory (they vary run to run).
  const std::regex varying(R"re(,"(time|step_ms|tok_per_s|mem_mib|mfu)":("[^"]*"|[-0-9.eE+]+))re");
  EXPECT_EQ(std::regex_replace(ReadAll(dir_ + "/a/metrics.jsonl"), varying, ""),
            std::regex_replace(ReadAll(dir_ + "/b/metrics.jsonl"), varying, ""));
  for (const char* f : {"model.safetensors", "optimizer-rank-00000.safetensors", "config.json"})
    EXPECT_EQ(ReadAll(dir_ + "/a/step-00000008/" + f), ReadAll(dir_ + "/b/step-00000008/" + f))
        << f;
  const CommittedCheckpoint ca = ReadCommittedCheckpoint(dir_ + "/a/step-00000008");
  const CommittedCheckpoint cb = ReadCommittedCheckpoint(dir_ + "/b/step-00000008");
  EXPECT_EQ(ca.step, 8u);
  EXPECT_EQ(ca.world_size, 1);
  EXPECT_EQ(ca.cursor, cb.cursor);
}

TEST_F(TrainCheckpointTest, KeepsTheLastKAndIgnoresIncompleteOnes) {
  RunConfig c = Config("k", 1, 2);
  c.training.steps = 4;
  Run(c, false);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir_ + "/k"))  // step dirs, not tensorboard/
    if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0)
      left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"step-00000003", "step-00000004"}));
  // A step directory without a manifest (a save cut short) is not a checkpoint, and a part its
  // manifest does not list (a leftover of an attempt with more ranks) is never read: it would
  // overlap rank 0's pieces.
  fs::create_directories(dir_ + "/k/step-00000009");
  fs::copy_file(dir_ + "/k/step-00000004/optimizer-rank-00000.safetensors",
                dir_ + "/k/step-00000004/optimizer-rank-00001.safetensors");
  c.training.steps = 5;
  EXPECT_NE(Run(c, true).find("step-00000004 (step 4"), std::string::npos);
}

TEST_F(TrainCheckpointTest, CorruptOrTruncatedIsNamedSetAsideAndThePreviousServes) {
  RunConfig c = Config("c", 1, 3);
  c.training.steps = 3;
  Run(c, false);
  // Flip one byte of step 3's weights.
  {
    std::fstream f(dir_ + "/c/step-00000003/model.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  try {
    ReadCommittedCheckpoint(dir_ + "/c/step-00000003");
    ADD_FAILURE() << "corrupt checkpoint verified";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors' does not match its checksum"),
              std::string::npos)
        << e.what();
  }
  // Truncate step 2's optimizer part.
  fs::resize_file(dir_ + "/c/step-00000002/optimizer-rank-00000.safetensors", 100);
  try {
    ReadCommittedCheckpoint(dir_ + "/c/step-00000002");
    ADD_FAILURE() << "truncated checkpoint verified";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has 100 bytes, the manifest says"), std::string::npos)
        << e.what();
  }
  c.training.steps = 4;
  const std::string log = Run(c, true);
  EXPECT_NE(log.find("train: warning: skipping checkpoint"), std::string::npos) << log;
  EXPECT_NE(log.find("step-00000001 (step 1"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(dir_ + "/c/step-00000003.corrupt"));
  EXPECT_TRUE(fs::exists(dir_ + "/c/step-00000002.corrupt"));
  EXPECT_TRUE(fs::exists(dir_ + "/c/step-00000004/manifest.json"));
}

}  // namespace
}  // namespace seqmesh::launch
