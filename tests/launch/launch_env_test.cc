// Which launcher started us: each source's variables, the precedence between them, and errors
// for malformed values naming the variable.
#include "launch/launch_env.h"

#include <gtest/gtest.h>

#include <map>

#include "runtime/check.h"
#include "tests/runtime/test_util.h"

namespace seqmesh::launch {
namespace {

LaunchEnv Detect(const std::map<std::string, std::string>& vars) {
  return DetectLaunchEnv([&](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

TEST(LaunchEnv, NoVariablesIsALocalJob) {
  const LaunchEnv e = Detect({});
  EXPECT_EQ(e.source, "local");
  EXPECT_FALSE(e.joined());
}

TEST(LaunchEnv, EachLauncher) {
  LaunchEnv e = Detect({{"RANK", "3"},
                        {"WORLD_SIZE", "8"},
                        {"LOCAL_RANK", "1"},
                        {"MASTER_ADDR", "node0"},
                        {"MASTER_PORT", "29500"}});
  EXPECT_EQ(e.source, "torchrun");
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29500);
  e = Detect({{"OMPI_COMM_WORLD_RANK", "2"},
              {"OMPI_COMM_WORLD_SIZE", "4"},
              {"OMPI_COMM_WORLD_LOCAL_RANK", "2"}});
  EXPECT_EQ(e.source, "openmpi");
  EXPECT_EQ(e.rank, 2);
  EXPECT_EQ(e.world_size, 4);
  e = Detect({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "6"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(e.source, "slurm");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.local_rank, 1);
  e = Detect({{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}});
  EXPECT_EQ(e.source, "pmi");
  EXPECT_NE(e.Describe().find("rank 0 of 2"), std::string::npos) << e.Describe();
}

TEST(LaunchEnv, PrecedenceOursThenTorchrunThenMpiThenSlurm) {
  // srun running mpirun-launched processes: Open MPI's variables win over Slurm's.
  LaunchEnv e = Detect({{"OMPI_COMM_WORLD_RANK", "1"},
                        {"OMPI_COMM_WORLD_SIZE", "2"},
                        {"SLURM_PROCID", "0"},
                        {"SLURM_NTASKS", "1"}});
  EXPECT_EQ(e.source, "openmpi");
  e = Detect(
      {{"SEQMESH_RANK", "0"}, {"SEQMESH_WORLD_SIZE", "1"}, {"RANK", "3"}, {"WORLD_SIZE", "4"}});
  EXPECT_EQ(e.source, "seqmesh");
  e = Detect({{"RANK", "1"},
              {"WORLD_SIZE", "2"},
              {"OMPI_COMM_WORLD_RANK", "0"},
              {"OMPI_COMM_WORLD_SIZE", "2"}});
  EXPECT_EQ(e.source, "torchrun");
}

TEST(LaunchEnv, MalformedValuesNameTheVariable) {
  using seqmesh::testing::ThrowsWith;
  EXPECT_TRUE(ThrowsWith([] { Detect({{"RANK", "x"}, {"WORLD_SIZE", "2"}}); }, "RANK='x'"));
  EXPECT_TRUE(ThrowsWith(
      [] {
        Detect({{"RANK", "2"}, {"WORLD_SIZE", "2"}});
      },
      "RANK=2 is outside WORLD_SIZE=2"));
  EXPECT_TRUE(ThrowsWith([] { Detect({{"RANK", "0"}}); }, "WORLD_SIZE is not set"));
  EXPECT_TRUE(ThrowsWith(
      [] {
        Detect({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "-1"}});
      },
      "SLURM_NTASKS"));
  EXPECT_TRUE(ThrowsWith([] { Detect({{"MASTER_PORT", "70000"}}); }, "MASTER_PORT"));
}

}  // namespace
}  // namespace seqmesh::launch
