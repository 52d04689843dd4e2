// metrics.jsonl (RunConfig::metrics_path) holds one record per step, whatever restarts happened
// (issue 13, item 8). A run that resumes after step k redoes steps k+1...: the records an earlier
// attempt wrote for them are replaced, not repeated. They are moved, never dropped, to
// <metrics path>.superseded (appended, each with the generation that wrote it), so the file reads
// as one run. Records carry a wall-clock "time" (UTC) and the step's "step_ms".
#pragma once

#include <cstdint>
#include <string>

namespace seqmesh::launch {

// Keeps the records of steps <= `step` in `path` (rewritten atomically); appends the others, and
// any line that is not a record, to `path`.superseded. Returns how many were moved.
int64_t SupersedeRecordsAfter(const std::string& path, uint64_t step);

// "2026-12-02T00:39:07.123Z"
std::string UtcTimestamp();

// This process's resident memory (VmRSS), MiB; 0 where /proc is not there.
double ResidentMiB();

}  // namespace seqmesh::launch
