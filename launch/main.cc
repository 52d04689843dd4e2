// `seqmesh <command> [flags]`: dispatches to the subcommands in kCommands. New subcommands (prep,
// train, profile, launch, worker, coordinator) add a row here and a <name>_command.cc.
#include <cstring>
#include <iostream>

#include "launch/command.h"
#include "runtime/check.h"

namespace seqmesh::launch {
namespace {

constexpr Command kCommands[] = {
    {"prep", "tokenize text or JSONL files into a Megatron indexed dataset", RunPrep},
    {"train", "train a model on one machine from a TOML configuration", RunTrain},
    {"synth", "generate long-context tasks (passkey retrieval, associative recall)", RunSynth},
    {"passkey-eval", "score a model's retrieval on synth documents", RunPasskeyEval},
    {"generate", "continue a prompt with a model (KV cache; greedy, temperature, top-p)",
     RunGenerate},
    {"eval", "a model's loss and perplexity on a dataset", RunEval},
    {"simulate", "plan simulated global batches with every planner and compare step times",
     RunSimulate},
    {"profile", "time one layer of a model on this machine and write its cost file", RunProfile},
    {"coordinator", "plan and serve the steps of a multi-process job (gRPC)", RunCoordinator},
    {"launch", "start an HDP training job: a coordinator and N workers (mpirun), with restarts",
     RunLaunch},
    {"worker", "one rank of a training job (started under MPI by launch)", RunWorker},
    {"trace", "put the ranks' Perfetto traces of a run on one timeline (trace merge RUN_DIR)",
     RunTraceCommand},
    {"report", "summarize a run and chart its loss, throughput and step times (SVG, PNG)",
     RunReport},
    {"export", "write a Hugging Face model with a LoRA adapter merged (--merge-lora)", RunExport},
};

void Usage(std::ostream& os) {
  os << "usage: seqmesh <command> [flags]\n\ncommands:\n";
  for (const Command& c : kCommands) os << "  " << c.name << "  " << c.summary << "\n";
  os << "  help  describe a command: seqmesh help <command>\n";
  os << "\n`seqmesh <command> --help` (or -h) describes a command's flags.\n";
}

}  // namespace
}  // namespace seqmesh::launch

int main(int argc, char** argv) {
  using namespace seqmesh::launch;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    Usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  // `seqmesh help CMD` is `seqmesh CMD --help`.
  const bool help = !std::strcmp(argv[1], "help");
  if (help && argc < 3) {
    Usage(std::cout);
    return 0;
  }
  const char* name = help ? argv[2] : argv[1];
  for (const Command& c : kCommands) {
    if (std::strcmp(name, c.name) != 0) continue;
    if (help) return c.run({"--help"});
    try {
      return c.run(Args(argv + 2, argv + argc));
    } catch (const std::exception& e) {
      std::cerr << "seqmesh " << c.name << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "seqmesh: unknown command '" << name << "'\n";
  Usage(std::cerr);
  return 2;
}
