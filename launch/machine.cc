#include "launch/machine.h"

#include <algorithm>
#include <fstream>

#include "runtime/cpu/vec.h"

namespace seqmesh::launch {

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
  }
  return "unknown CPU";
}

scheduler::MachineInfo ThisMachine(int threads, int ranks) {
  scheduler::MachineInfo m;
  m.cpu = CpuModelName();
  std::replace(m.cpu.begin(), m.cpu.end(), ' ', '_');
  std::replace(m.cpu.begin(), m.cpu.end(), '\t', '_');
  m.isa = cpu::Vec().isa;
  m.gpu = "none";
  m.threads = threads;
  m.ranks = ranks;
  return m;
}

std::string CostFileMachineWarning(const scheduler::CostModel& cost, const std::string& path,
                                   const scheduler::MachineInfo& here) {
  const std::string why = scheduler::MachineMismatch(cost.machine, here);
  if (why.empty()) return "";
  return "warning: the cost file '" + path + "' describes another machine: " + why +
         "; its step times will be off here (the online refit corrects them as a job runs). "
         "Profile this one: seqmesh profile --config CONFIG --concurrent --rings --out FILE "
         "(under mpirun -n " +
         std::to_string(std::max(1, here.ranks)) + ")";
}

}  // namespace seqmesh::launch
