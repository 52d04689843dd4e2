#include "launch/root_cause.h"

#include <regex>
#include <sstream>
#include <vector>

namespace seqmesh::launch {
namespace {

struct SignalDeath {
  std::string rank, pid, node, signal, name;
  double seconds = 0;  // when mpirun reported it
  std::string Text() const {
    // mpirun prints PID 0 when it no longer knows the pid.
    return "worker rank " + rank + (pid == "0" ? " (on " : " (pid " + pid + " on ") + node +
           ") was killed by signal " + signal + " (" + name + ")";
  }
};

std::string Joined(const std::vector<StderrLine>& lines) {
  std::string text;
  for (const StderrLine& line : lines) text += line.text + "\n";
  return text;
}

std::vector<StderrLine> Lines(const std::string& text, double seconds) {
  std::vector<StderrLine> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back({seconds, line});
  return lines;
}

}  // namespace

std::string RootCause(const std::vector<StderrLine>& mpirun,
                      const std::vector<StderrLine>& coordinator) {
  static const std::regex dead(R"(coordinator: (rank (\d+) .*declared dead.*))");
  static const std::regex never(R"(coordinator: (rank (\d+) never registered.*))");
  static const std::regex signaled(
      R"(process rank (\d+) with PID (\d+) on node (\S+) exited on signal (\d+) \(([^)]*)\))");
  static const std::regex nonzero(
      R"(Process name: \[\[\d+,\d+\],(\d+)\][\s\S]*?Exit code:\s*(\d+))");
  // Every signal death mpirun reported, in its order; the launcher's own stop (SIGTERM) is none.
  std::vector<SignalDeath> deaths;
  for (const StderrLine& line : mpirun) {
    std::smatch m;
    if (!std::regex_search(line.text, m, signaled) || m[4].str() == "15") continue;
    deaths.push_back({m[1].str(), m[2].str(), m[3].str(), m[4].str(), m[5].str(), line.seconds});
  }
  std::smatch m;
  for (const StderrLine& line : coordinator) {
    if (!std::regex_search(line.text, m, dead) && !std::regex_search(line.text, m, never)) continue;
    for (const SignalDeath& d : deaths)
      if (d.rank == m[2].str()) return d.Text();  // the same rank: its signal says more
    // A kill reported before the verdict caused it.
    if (!deaths.empty() && deaths.front().seconds < line.seconds) return deaths.front().Text();
    return m[1].str();
  }
  // The coordinator's own failure (a batch it cannot plan, a checkpoint it cannot commit): the
  // workers then fail on its abort, in any order.
  static const std::regex failed(R"(coordinator: job failed: (.*))");
  for (const StderrLine& line : coordinator)
    if (std::regex_search(line.text, m, failed)) return m[1].str();
  if (!deaths.empty()) return deaths.front().Text();
  const std::string text = Joined(mpirun);
  if (std::regex_search(text, m, nonzero))
    return "worker rank " + m[1].str() + " exited with code " + m[2].str();
  return "";
}

std::string RootCause(const std::string& mpirun_err, const std::string& coordinator_err) {
  // The verdict at time 0 and mpirun's reports after it: the verdict counts as first.
  return RootCause(Lines(mpirun_err, 1), Lines(coordinator_err, 0));
}

}  // namespace seqmesh::launch
