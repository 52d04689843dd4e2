// The root cause of a failed attempt of a local job, from what mpirun and the coordinator printed
// (docs/LAUNCH.md, "Failures").
//
// Precedence: the rank the coordinator declared dead (a hang: its peers then fail on their
// deadlines or are stopped, and mpirun reports whichever of them exits first, often with code
// 1), told with its signal when mpirun saw that same rank die by one; unless mpirun reported a
// rank killed by a signal (other than SIGTERM, the launcher's own stop) before the verdict came:
// then the kill is the cause and the verdict its consequence (the survivors stopped beating when
// mpirun aborted them). Else the coordinator's own failure of the job ("coordinator: job failed:
// ...", e.g. a batch it cannot plan: the workers then exit on its abort); else the first rank that
// died by a signal other than SIGTERM; else the first non-zero exit. In every case the order the
// survivors exit in does not change the answer.
#pragma once

#include <string>
#include <vector>

namespace seqmesh::launch {

// One line of a child's stderr and when it arrived (seconds on any one clock).
struct StderrLine {
  double seconds = 0;
  std::string text;  // without its newline
};

// `mpirun`: mpirun's stderr; `coordinator`: the coordinator's. "" when neither says anything.
std::string RootCause(const std::vector<StderrLine>& mpirun,
                      const std::vector<StderrLine>& coordinator);

// The same from text with no arrival times: the verdict counts as having come first.
std::string RootCause(const std::string& mpirun_err, const std::string& coordinator_err);

}  // namespace seqmesh::launch
