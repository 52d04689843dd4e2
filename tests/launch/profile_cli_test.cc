// `seqmesh profile` end to end on a tiny model (a few seconds): the file it writes is a cost file
// the planner loads; what is exact is checked exactly (activation bytes from the model's shape,
// KV bytes per token, the fit of its own recorded samples); times are only checked for sign
// (no timed assertions, STYLE.md rule 9). Bad arguments fail with a message naming the problem.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "scheduler/cost_model.h"
#include "scheduler/plan.h"

namespace seqmesh::scheduler {
namespace {

namespace fs = std::filesystem;

// Shape of the tiny model below.
constexpr int kHidden = 64, kHeads = 4, kKvHeads = 2, kFfn = 256, kLayers = 2;

struct Result {
  int status;  // exit status, or -1 if the process did not exit normally
  std::string output;
};

// Runs a shell command line; `output` gets its stdout (and stderr where the line says 2>&1).
Result RunShell(const std::string& command) {
  Result r{-1, ""};
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) r.output.append(buf, n);
  const int status = pclose(pipe);
  if (WIFEXITED(status)) r.status = WEXITSTATUS(status);
  return r;
}

class ProfileCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("seqmesh_profile_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    config_ = (dir_ / "tiny.toml").string();
    std::ofstream(config_) << "[model]\nvocab = 259\nhidden = " << kHidden
                           << "\nlayers = " << kLayers << "\nheads = " << kHeads
                           << "\nkv_heads = " << kKvHeads << "\nffn = " << kFfn
                           << "\n[training]\nthreads = 1\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Where a command's report (stderr) goes when stdout is the cost file: read back on failure.
  std::string Stderr() const { return (dir_ / "stderr.txt").string(); }
  std::string ReadStderr() const {
    std::ifstream in(Stderr());
    std::stringstream text;
    text << in.rdbuf();
    return "\nstderr:\n" + text.str();
  }

  std::string Profile(const std::string& flags) const {
    return std::string(SEQMESH_BINARY) + " profile --config " + config_ + " " + flags;
  }

  fs::path dir_;
  std::string config_;
};

// The "# T s one two layer fitted error%" rows the file records.
struct Row {
  double tokens, layer_ms, fitted_ms;
};
std::vector<Row> Rows(const std::string& text, const std::string& tag) {
  std::vector<Row> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# " + tag + " ", 0) != 0) continue;
    std::istringstream f(line.substr(tag.size() + 3));
    Row r;
    double one, two;
    f >> r.tokens >> one >> two >> r.layer_ms >> r.fitted_ms;
    EXPECT_FALSE(f.fail()) << line;
    rows.push_back(r);
  }
  return rows;
}

TEST_F(ProfileCli, WritesACostFileThePlannerLoadsAndThatFitsItsOwnSamples) {
  const std::string out = (dir_ / "tiny-cpu.cost").string();
  Result r = RunShell(
      Profile("--out " + out + " --lengths 512,1K,2K --reps 3 --check --holdout 768") + " 2>&1");
  // --check exits 3 when an error is above 15%; on a loaded machine the held-out point may be,
  // and that is a figure, not a bug. Anything else is.
  ASSERT_TRUE(r.status == 0 || r.status == 3) << r.output;
  EXPECT_NE(r.output.find("holdout     768"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(r.status == 0 ? "check passed" : "check FAILED"), std::string::npos)
      << r.output;

  const CostModel m = LoadCostModel(out);
  EXPECT_EQ(m.name, "tiny-cpu");  // from --out
  EXPECT_EQ(m.layers_per_rank, kLayers);
  // The coefficients' signs are not asserted beyond >= 0 (the fit clamps them): each is within
  // the noise of a shared machine at these lengths (b1 = 0 was seen at load 2.5, and a1 = 0 with
  // a 2-thread training job beside ctest -j2), and asserting one would be a timed assertion.
  // That a longer layer costs more is what the planner needs, and holds under any load seen.
  EXPECT_GE(m.a1, 0);
  EXPECT_GE(m.b1, 0);
  EXPECT_GT(m.LayerMs(2048), m.LayerMs(512));
  const int head_dim = kHidden / kHeads;
  EXPECT_EQ(m.kv_bytes_per_token, 3.0 * 2 * kKvHeads * head_dim * 4);
  // What one layer keeps per token (f32): its input in the residual stream, xn1, rstd1, qkv,
  // attn, lse (per head), x2, xn2, rstd2, gate_up, h. At multiples of 16 tokens every tensor is
  // a multiple of the arena's 64-byte alignment, so there is no padding: b2 = 0.
  const double floats = kHidden + kHidden + 1 + (kHeads + 2 * kKvHeads) * head_dim + kHidden +
                        kHeads + kHidden + kHidden + 1 + 2 * kFfn + kFfn;
  EXPECT_DOUBLE_EQ(m.a2, 4 * floats);
  EXPECT_EQ(m.b2, 0);
  EXPECT_GT(m.p2p_gbps, 0);
  EXPECT_GT(m.d2h_gbps, 0);
  EXPECT_EQ(m.ssd_write_gbps, 0) << "the config offloads nothing to SSD: nothing measured";

  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  const std::vector<Row> fit = Rows(text.str(), "T"), held = Rows(text.str(), "H");
  ASSERT_EQ(fit.size(), 3u) << text.str();
  ASSERT_EQ(held.size(), 1u) << text.str();
  EXPECT_EQ(held[0].tokens, 768);
  // The file's coefficients are the fit of the samples it records, and its "fitted" column is
  // that model's prediction (both printed to 3 decimals).
  std::vector<ComputeSample> samples;
  for (const Row& row : fit) samples.push_back({row.tokens, row.layer_ms});
  CostModel refit;
  FitCompute(samples, refit, FitError::kRelative);
  for (const Row& row : fit) {
    EXPECT_NEAR(refit.LayerMs(row.tokens), m.LayerMs(row.tokens), 2e-3) << row.tokens;
    EXPECT_NEAR(row.fitted_ms, m.LayerMs(row.tokens), 1e-3) << row.tokens;
  }
  EXPECT_NEAR(held[0].fitted_ms, m.LayerMs(768), 1e-3);
  // Three lengths, three coefficients: unless a coefficient was clamped at 0, the fit goes
  // through every measured point.
  if (m.a1 > 0 && m.b1 > 0 && m.g > 0) {
    for (const Row& row : fit) EXPECT_NEAR(row.fitted_ms, row.layer_ms, 2e-3) << row.tokens;
  }
}

TEST_F(ProfileCli, UnderMpirunRanksZeroAndOnePingPongAndTheFileGoesToStdout) {
  // Only rank 0 writes; without --out the cost file is stdout and the report stderr.
  Result r = RunShell(std::string(SEQMESH_MPIRUN) + " " +
                      Profile("--lengths 256,512,1K --reps 1 --name two-ranks") + " 2>" + Stderr());
  ASSERT_EQ(r.status, 0) << r.output << ReadStderr();
  const CostModel m = ParseCostModel(r.output, "stdout");
  EXPECT_EQ(m.name, "two-ranks");
  EXPECT_GT(m.p2p_gbps, 0);
  EXPECT_NE(r.output.find("ping-pong of ranks 0 and 1 of 2 MPI ranks"), std::string::npos)
      << r.output;
}

TEST_F(ProfileCli, RingsCalibratePassesThatTheFileRecordsAndReproduces) {
  Result r = RunShell(std::string(SEQMESH_MPIRUN) + " " +
                      Profile("--lengths 256,512,1K --reps 1 --concurrent --rings "
                              "--ring-tokens 64,128,256 --name rings") +
                      " 2>" + Stderr());
  ASSERT_EQ(r.status, 0) << r.output << ReadStderr();
  const CostModel m = ParseCostModel(r.output, "stdout");
  // Two ranks: local passes (D = 1) and a ring of both (D = 2); no rank is left beside a ring,
  // so there is no contended calibration.
  ASSERT_EQ(m.pass.size(), 2u) << r.output;
  EXPECT_EQ(m.pass.count(1), 1u);
  EXPECT_EQ(m.pass.count(2), 1u);
  EXPECT_TRUE(m.contended_pass.empty());
  EXPECT_GT(m.step_fixed_ms, 0);
  EXPECT_GE(m.head_ms_per_token, 0);
  // Each recorded row: "# R D c pass model fitted error wait sync spread". Its model column is
  // layers x T(c D)/D of the file's own coefficients and its fitted column the file's
  // calibration of that D (both printed to 3 decimals).
  int rows = 0;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# R ", 0) != 0) continue;
    std::istringstream f(line.substr(4));
    int d;
    double c, pass, model, fitted;
    f >> d >> c >> pass >> model >> fitted;
    ASSERT_FALSE(f.fail()) << line;
    EXPECT_GT(pass, 0) << line;
    EXPECT_NEAR(model, m.layers_per_rank * m.LayerMs(c * d) / d, 1.5e-3) << line;
    const CostModel::PassCalibration cal = m.Pass(d);
    // Both columns are printed to 3 decimals: the model column's rounding (<= 5e-4) is scaled
    // by the factor (which grows when the machine is loaded: 2e-3 flat failed at 0.0026 under
    // ctest -j2), and the fitted column adds its own; 1e-4 covers the file's own coefficients.
    EXPECT_NEAR(fitted, cal.factor * model + cal.ms + m.head_ms_per_token * c,
                5e-4 * (1 + std::abs(cal.factor)) + 1e-4)
        << line;
    ++rows;
  }
  EXPECT_EQ(rows, 6) << r.output;  // D = 1, 2 at 3 token counts
  // A plan's replay uses them: a ring of 2 over 512 tokens costs its calibrated pass.
  EXPECT_NEAR(SequenceRingCost(m, 512, 2).compute_ms,
              m.Pass(2).factor * m.layers_per_rank * m.LayerMs(512) / 2 + m.Pass(2).ms +
                  m.head_ms_per_token * 256,
              1e-9);
}

// A config that offloads to SSD gets the SSD engine's bandwidths in its cost file (issue 15:
// the selective activation policy reads them from there).
TEST_F(ProfileCli, MeasuresTheSsdWhenTheConfigOffloadsToIt) {
  // On a disk file system (O_DIRECT): /var/tmp, as the offload tests' scratch, not /tmp (tmpfs
  // on some machines).
  const char* root = std::getenv("SEQMESH_TEST_SCRATCH");
  const fs::path scratch =
      fs::path(root ? root : "/var/tmp") / ("seqmesh_profile_ssd_" + std::to_string(getpid()));
  fs::create_directories(scratch);
  struct Remove {
    fs::path p;
    ~Remove() { fs::remove_all(p); }
  } remove{scratch};
  std::ofstream(config_, std::ios::app)
      << "checkpoint_activations = true\n[offload]\nactivations = \"nvme\"\nnvme_path = \""
      << scratch.string() << "\"\n";
  const std::string out = (dir_ / "ssd.cost").string();
  Result r = RunShell(Profile("--out " + out + " --lengths 128,256,512 --reps 1 --holdout none") +
                      " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("ssd (" + scratch.string() + "): write "), std::string::npos) << r.output;
  const CostModel m = LoadCostModel(out);
  EXPECT_GT(m.ssd_write_gbps, 0);
  EXPECT_GT(m.ssd_read_gbps, 0);
  EXPECT_TRUE(fs::is_empty(scratch)) << "the probe's file was left behind";
}

TEST_F(ProfileCli, BadArgumentsFailNamingTheProblem) {
  const std::string binary = SEQMESH_BINARY;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {binary + " profile", "missing --config FILE"},
      {binary + " profile --config " + (dir_ / "none.toml").string(), "does not exist"},
      {Profile("--bogus"), "unknown flag '--bogus'"},
      {Profile("--lengths 1K,abc,4K"), "'abc' is not a length"},
      {Profile("--lengths 1K,2K,1M"), "length 1M is above the maximum 131072"},
      {Profile("--lengths 1K,2K,1K"), "length 1K is given twice"},
      {Profile("--lengths 1K,2K"), "needs at least 3 lengths"},
      {Profile("--reps 0"), "--reps must be in [1, 1000]"},
      {Profile("--threads"), "--threads needs a value"},
      {Profile("--model.hiden=32"), "did you mean 'model.hidden'"},
      {Profile("--out /nonexistent/dir/x.cost"), "directory '/nonexistent/dir' does not exist"},
      {Profile("--ring-tokens 512"), "--ring-tokens needs --rings"},
      {Profile("--rings --lengths 256,512,1K --reps 1"), "--rings needs >= 2 MPI ranks"},
  };
  for (const auto& [command, message] : cases) {
    Result r = RunShell(command + " 2>&1");
    EXPECT_EQ(r.status, 1) << command << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << command << "\n" << r.output;
  }
}

}  // namespace
}  // namespace seqmesh::scheduler
