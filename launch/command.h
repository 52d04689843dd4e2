// The `seqmesh` command line: a table of subcommands, one file per subcommand. A subcommand
// takes its arguments (without the program and subcommand names) and returns the exit status;
// errors are thrown as seqmesh::Error and printed by main.
#pragma once

#include <string>
#include <vector>

namespace seqmesh::launch {

using Args = std::vector<std::string>;

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const Args& args);
};

int RunSimulate(const Args& args);
int RunPrep(const Args& args);
int RunTrain(const Args& args);
int RunSynth(const Args& args);
int RunPasskeyEval(const Args& args);
int RunGenerate(const Args& args);
int RunEval(const Args& args);
int RunProfile(const Args& args);
int RunCoordinator(const Args& args);
int RunWorker(const Args& args);
int RunLaunch(const Args& args);
int RunTraceCommand(const Args& args);
int RunReport(const Args& args);
int RunExport(const Args& args);

}  // namespace seqmesh::launch
