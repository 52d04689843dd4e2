// The root cause of a failed attempt of a local job, from what mpirun and the coordinator printed
// (docs/LAUNCH.md, "Failures").
//
// Precedence: the rank the coordinator declared dead (a hang: its peers then fail on their
// deadlines or are stopped, and mpirun reports whichever of them exits first, often with code
// 1), told with its signal when mpirun saw that same rank die by one; else the coordinator's own
// failure of the job ("coordinator: job failed: ...", e.g. a batch it cannot plan: the workers
// then exit on its abort); else the first rank that died by a signal other than SIGTERM (the
// launcher's own stop: a worker that another process sent SIGTERM is reported as mpirun's exit
// instead); else the first non-zero exit. In every case the order the survivors exit in does not
// change the answer.
#pragma once

#include <string>

namespace seqmesh::launch {

// `mpirun_err`: mpirun's stderr; `coordinator_err`: the coordinator's. "" when neither says
// anything.
std::string RootCause(const std::string& mpirun_err, const std::string& coordinator_err);

}  // namespace seqmesh::launch
