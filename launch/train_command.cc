// `seqmesh train --config FILE [--resume] [--init-from DIR] [--section.key=value ...]`
#include <iostream>

#include "launch/command.h"
#include "launch/trainer.h"
#include "runtime/check.h"

namespace seqmesh::launch {

int RunTrain(const Args& args) {
  std::string config_path;
  TrainerOptions options;
  std::vector<std::string> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help") {
      std::cout << "usage: seqmesh train --config FILE [--resume] [--init-from DIR] "
                   "[--section.key=value ...]\n";
      return 0;
    }
    if (a == "--config") {
      SM_CHECK(i + 1 < args.size()) << "--config needs a file";
      config_path = args[++i];
    } else if (a == "--resume") {
      options.resume = true;
    } else if (a == "--init-from") {
      SM_CHECK(i + 1 < args.size()) << "--init-from needs a directory";
      options.init_from = args[++i];
    } else {
      SM_CHECK(a.rfind("--", 0) == 0 && a.find('=') != std::string::npos)
          << "unknown argument '" << a << "' (overrides look like --section.key=value)";
      overrides.push_back(a);
    }
  }
  SM_CHECK(!config_path.empty()) << "missing --config FILE";
  return Train(RunConfig::Load(config_path, overrides), options, std::cout);
}

}  // namespace seqmesh::launch
