// One worker rank (launch/worker_command.cc): used by `seqmesh worker` and by `seqmesh launch`
// inside an allocation another launcher made (every process runs a rank in-process).
#pragma once

#include <string>

namespace seqmesh::launch {

struct WorkerArgs {
  std::string coordinator;  // HOST:PORT
  std::string token;
  std::string tls_root;  // PEM of the coordinator's certificate; empty: plaintext
  // Mutual TLS: this worker's certificate and key (PEM), when the coordinator requires them.
  std::string tls_cert, tls_key;
};

// Runs this process's rank to the end of the job; MPI must be initialized. Errors end the
// process with status 1 (the process is the unit of recovery).
int RunWorkerRank(const WorkerArgs& args);

}  // namespace seqmesh::launch
