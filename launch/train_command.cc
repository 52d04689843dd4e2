// `seqmesh train --config FILE [--resume | --overwrite] [--init-from DIR] [--section.key=value
// ...]`
#include <iostream>

#include "launch/command.h"
#include "launch/flags.h"
#include "launch/trainer.h"
#include "runtime/check.h"

namespace seqmesh::launch {

int RunTrain(const Args& args) {
  std::string config_path;
  TrainerOptions options;
  std::vector<std::string> overrides;
  FlagParser flags("train", "train a model on one machine from a TOML configuration",
                   "seqmesh train --config examples/text.toml --training.steps=100");
  flags.String("--config", "FILE", &config_path, "the run's TOML configuration", Required::kYes)
      .RunStart(&options.resume, &options.overwrite, &options.init_from)
      .ConfigOverrides(&overrides);
  if (!flags.Parse(args)) return 0;
  return Train(RunConfig::Load(config_path, overrides), options, std::cout);
}

}  // namespace seqmesh::launch
