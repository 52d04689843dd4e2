// This machine as cost files and the MFU cache record it: the CPU model (from /proc/cpuinfo),
// the ISA our kernels run, the GPU (none on the CPU build).
#pragma once

#include <string>

#include "scheduler/cost_model.h"

namespace seqmesh::launch {

// "AMD EPYC 7B13" as /proc/cpuinfo names it ("unknown CPU" where it does not).
std::string CpuModelName();

// This machine for `threads` compute threads per rank and `ranks` ranks at once.
scheduler::MachineInfo ThisMachine(int threads, int ranks);

// A warning line ("" when none) when the cost file at `path` was profiled on another machine
// than this one, with the command that profiles this one.
std::string CostFileMachineWarning(const scheduler::CostModel& cost, const std::string& path,
                                   const scheduler::MachineInfo& here);

}  // namespace seqmesh::launch
