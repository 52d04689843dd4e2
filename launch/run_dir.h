// A run directory (<checkpoint.dir>) belongs to one run (issue 13, item 3). A fresh start into a
// directory that holds an earlier run (committed checkpoints, ones set aside as corrupt, or
// metrics records) is refused, naming --resume and --overwrite; --overwrite moves the earlier
// run's files aside into <dir>/overwritten-<UTC time>/ (nothing is deleted). A resumed run is
// compared with the configuration the run saved (<dir>/config.toml) key by key: a change that
// cannot resume (the model's shape, the data and its split or permutation) is refused, naming
// each key; the others are reported. `train` and the coordinator both call these.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "runtime/run_config.h"

namespace seqmesh::launch {

// What the run directory holds of an earlier run ("" when nothing).
std::string DescribeEarlierRun(const RunConfig& config);

// Before a fresh run (no --resume): refuses a used directory, or with `overwrite` moves the
// earlier run aside and says where on `out`. `who` prefixes the lines ("train", "coordinator").
void PrepareFreshRun(const RunConfig& config, bool overwrite, std::ostream& out,
                     const std::string& who);

// Before a resumed run: compares `config` with <checkpoint.dir>/config.toml (if the run saved
// one). Returns the changes as "key: old -> new", reported on `out`; throws naming the keys
// whose change cannot resume.
std::vector<std::string> CheckResumedConfig(const RunConfig& config, std::ostream& out,
                                            const std::string& who);

}  // namespace seqmesh::launch
