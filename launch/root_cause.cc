#include "launch/root_cause.h"

#include <regex>
#include <vector>

namespace seqmesh::launch {
namespace {

struct SignalDeath {
  std::string rank, pid, node, signal, name;
  std::string Text() const {
    // mpirun prints PID 0 when it no longer knows the pid.
    return "worker rank " + rank + (pid == "0" ? " (on " : " (pid " + pid + " on ") + node +
           ") was killed by signal " + signal + " (" + name + ")";
  }
};

}  // namespace

std::string RootCause(const std::string& mpirun_err, const std::string& coordinator_err) {
  static const std::regex dead(R"(coordinator: (rank (\d+) .*declared dead[^\n]*))");
  static const std::regex never(R"(coordinator: (rank (\d+) never registered[^\n]*))");
  static const std::regex signaled(
      R"(process rank (\d+) with PID (\d+) on node (\S+) exited on signal (\d+) \(([^)]*)\))");
  static const std::regex nonzero(
      R"(Process name: \[\[\d+,\d+\],(\d+)\][\s\S]*?Exit code:\s*(\d+))");
  // Every signal death mpirun reported, in its order; the launcher's own stop (SIGTERM) is none.
  std::vector<SignalDeath> deaths;
  for (auto it = std::sregex_iterator(mpirun_err.begin(), mpirun_err.end(), signaled);
       it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    SignalDeath d{m[1].str(), m[2].str(), m[3].str(), m[4].str(), m[5].str()};
    if (d.signal == "15") continue;
    deaths.push_back(d);
  }
  std::smatch m;
  if (std::regex_search(coordinator_err, m, dead) || std::regex_search(coordinator_err, m, never)) {
    for (const SignalDeath& d : deaths)
      if (d.rank == m[2].str()) return d.Text();  // the same rank: its signal says more
    return m[1].str();
  }
  // The coordinator's own failure (a batch it cannot plan, a checkpoint it cannot commit): the
  // workers then fail on its abort, in any order.
  static const std::regex failed(R"(coordinator: job failed: ([^\n]*))");
  if (std::regex_search(coordinator_err, m, failed)) return m[1].str();
  if (!deaths.empty()) return deaths.front().Text();
  if (std::regex_search(mpirun_err, m, nonzero))
    return "worker rank " + m[1].str() + " exited with code " + m[2].str();
  return "";
}

}  // namespace seqmesh::launch
