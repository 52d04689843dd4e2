// A run's Perfetto trace (runtime/trace.h) for one process: <checkpoint.dir>/trace/
// rank-RRRRR.gen-G.json, G the coordinator's generation (a restarted job's ranks write new files
// beside the earlier attempt's) or, for train, the first number not yet used. Written unless
// metrics.trace = false; `seqmesh trace merge RUN_DIR` puts the files on one timeline.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "runtime/run_config.h"

namespace seqmesh::launch {

class RunTrace {
 public:
  // generation: nullopt picks the first unused number. A process tracing already (a second
  // Trainer in one Python process) writes no second trace: path() is then empty.
  RunTrace(const RunConfig& config, int rank, std::optional<uint64_t> generation,
           const std::string& process_name);
  ~RunTrace();
  RunTrace(const RunTrace&) = delete;
  RunTrace& operator=(const RunTrace&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace seqmesh::launch
