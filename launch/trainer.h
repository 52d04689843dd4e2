// The single-process trainer, a world of one rank on the one step path (StepPlanner + HdpStep):
// a run directory, a dataset, the model, ZeRO-1 AdamW over one rank with clipping and the
// schedule, checkpoints in the job layout (resume bit for bit, and across world sizes), console
// and JSONL metrics, and validation.
//
// `Trainer` is the run as an object, one step at a time: `seqmesh train` (Train below) and the
// Python package (python/) drive the same object, so a script's steps are the command line's,
// bit for bit. Stopping on a signal is the driver's: Train saves and exits 0 on SIGINT/SIGTERM;
// Python raises KeyboardInterrupt after the step, with a checkpoint.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/json.h"
#include "runtime/model.h"
#include "runtime/run_config.h"

namespace seqmesh::launch {

struct TrainerOptions {
  bool resume = false;     // continue from the newest checkpoint in the run directory
  bool overwrite = false;  // a fresh run in a used directory: move the earlier run aside
  std::string init_from;   // a Hugging Face directory to start from (its config.json wins)
  // false: a run without data.path is allowed; its steps take their documents from the caller.
  bool require_data = true;
};

// Documents brought by the caller: token ids, one vector per document.
using Documents = std::vector<std::vector<int32_t>>;

struct StepInputs;  // trainer.cc: what one step runs on

class Trainer {
 public:
  // Prepares the run directory (refusing a used one unless resuming or overwriting), opens the
  // data, builds the model and resumes when asked. Prints what `seqmesh train` prints to `out`.
  Trainer(RunConfig config, const TrainerOptions& options, std::ostream& out);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One step: on the dataset's next global batch, or on `documents` (their lengths planned as a
  // fixed batch; the data cursor does not move). Returns the step's metrics.jsonl record, which
  // it also appends to the file and logs on the console. Throws when the non-finite policy says
  // stop.
  Json Step();
  Json Step(const Documents& documents);

  // A checkpoint after the steps done so far, in the run directory's job layout (what --resume
  // and `launch --resume` continue from); returns its directory.
  std::string Save();
  // Restores a committed checkpoint directory (step-N of any run and world size): weights,
  // moments, step and data cursor.
  void Load(const std::string& checkpoint_dir);
  // The loss on the held-out validation set (NaN when there is none), or on `documents`.
  double Evaluate();
  double Evaluate(const Documents& documents);

  uint64_t step() const;  // steps completed
  bool done() const;      // step() == training.steps
  bool has_data() const;  // data.path was set
  const RunConfig& config() const { return config_; }
  Model& model();
  // False once the gradients of the last step were handed to the offloaded optimizer store
  // (offload.optimizer = "nvme" in a world of one: their memory is given back).
  bool gradients_resident() const;

 private:
  struct State;
  void CheckNotDone() const;
  Json Finish(const StepInputs& in);
  RunConfig config_;
  std::ostream& out_;
  std::unique_ptr<State> s_;
};

// Runs the whole training run (`seqmesh train`); returns the process exit status. On SIGINT or
// SIGTERM it finishes the step, saves a checkpoint and returns 0.
int Train(RunConfig config, const TrainerOptions& options, std::ostream& out);

}  // namespace seqmesh::launch
