#include "launch/launch_env.h"

#include <cstdlib>
#include <sstream>

#include "runtime/check.h"
#include "runtime/text.h"

namespace seqmesh::launch {
namespace {

int ParseInt(const std::string& text, const char* var) {
  const std::optional<int64_t> v = ParseInt64(text);
  SM_CHECK(v && *v >= 0 && *v <= 1'000'000'000)
      << "environment variable " << var << "='" << text << "' is not a non-negative integer";
  return static_cast<int>(*v);
}

}  // namespace

std::string LaunchEnv::Describe() const {
  std::ostringstream s;
  if (!joined()) {
    s << "no launcher variables found: starting a local job";
    return s.str();
  }
  s << "ranks from " << source << ": rank " << rank << " of " << world_size << " (local rank "
    << local_rank << ")";
  if (!master_addr.empty()) s << ", coordinator host " << master_addr;
  if (master_port > 0) s << ", port " << master_port;
  return s.str();
}

LaunchEnv DetectLaunchEnv(const std::function<std::optional<std::string>(const char*)>& getenv) {
  struct Source {
    const char* name;
    const char* rank;
    const char* size;
    const char* local;  // may be null
  };
  static constexpr Source kSources[] = {
      {"seqmesh", "SEQMESH_RANK", "SEQMESH_WORLD_SIZE", "SEQMESH_LOCAL_RANK"},
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
      {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
      {"pmi", "PMI_RANK", "PMI_SIZE", "PMI_LOCAL_RANK"},
      {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
  };
  LaunchEnv env;
  for (const Source& s : kSources) {
    const auto rank = getenv(s.rank), size = getenv(s.size);
    if (!rank && !size) continue;
    SM_CHECK(rank && size) << s.name << " launch: " << (rank ? s.size : s.rank)
                           << " is not set but " << (rank ? s.rank : s.size) << " is";
    env.source = s.name;
    env.rank = ParseInt(*rank, s.rank);
    env.world_size = ParseInt(*size, s.size);
    SM_CHECK(env.world_size >= 1) << s.size << " must be at least 1";
    SM_CHECK(env.rank < env.world_size)
        << s.rank << "=" << env.rank << " is outside " << s.size << "=" << env.world_size;
    if (const auto local = getenv(s.local)) env.local_rank = ParseInt(*local, s.local);
    break;
  }
  if (const auto addr = getenv("SEQMESH_COORDINATOR_ADDR"))
    env.master_addr = *addr;
  else if (const auto addr = getenv("MASTER_ADDR"))
    env.master_addr = *addr;
  if (const auto port = getenv("MASTER_PORT")) {
    env.master_port = ParseInt(*port, "MASTER_PORT");
    SM_CHECK(env.master_port > 0 && env.master_port < 65536)
        << "MASTER_PORT=" << env.master_port << " is not a TCP port";
  }
  return env;
}

LaunchEnv DetectLaunchEnv() {
  return DetectLaunchEnv([](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (!v) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace seqmesh::launch
