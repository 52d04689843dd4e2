// Where `seqmesh launch` runs: started alone (it spawns the coordinator and N workers through
// mpirun), or as one process of an allocation another launcher made (mpirun, srun, torchrun),
// found from the environment in this order (docs/LAUNCH.md):
//   1. SEQMESH_RANK / SEQMESH_WORLD_SIZE (ours)
//   2. torchrun: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//   3. Open MPI: OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
//   4. PMI (MPICH, Intel MPI): PMI_RANK, PMI_SIZE
//   5. Slurm: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
//   6. none: a local job
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace seqmesh::launch {

struct LaunchEnv {
  std::string source = "local";  // seqmesh, torchrun, openmpi, pmi, slurm, local
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;  // torchrun's (or SEQMESH_COORDINATOR_ADDR), "" if none
  int master_port = 0;      // 0 if none
  bool joined() const { return source != "local"; }
  // One line for the log: where the ranks came from.
  std::string Describe() const;
};

// `getenv` returns a variable's value or nothing. Malformed values (non-numbers, rank outside
// the world) are errors naming the variable.
LaunchEnv DetectLaunchEnv(const std::function<std::optional<std::string>(const char*)>& getenv);
LaunchEnv DetectLaunchEnv();  // from the process environment

}  // namespace seqmesh::launch
