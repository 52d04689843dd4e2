// The configuration of a training run: one TOML file in sections
//   [model] [training] [optimizer] [data] [checkpoint] [distributed] [offload] [metrics] [lora]
// plus dotted overrides from the command line (`--training.steps=100`), which win over the file,
// which wins over the defaults. Unknown sections and keys are rejected with the closest valid
// name suggested; a value of the wrong type names the key and both types. ToToml() prints the
// resolved configuration (every key, defaults included), which the trainer prints and saves.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/hf_checkpoint.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"

namespace seqmesh {

// A step whose global gradient norm is not finite (a NaN or infinite loss or gradient): it never
// updates the parameters; stop ends the run there, skip drops the step, counts it, and stops
// after training.nonfinite_limit such steps in a row (as Megatron and DeepSpeed skip steps).
enum class NonFinitePolicy { kStop, kSkip };
const std::vector<std::string>& NonFiniteNames();
const std::vector<std::string>& PrecisionNames();  // "fp32", "bf16"

// training.checkpoint_activations: the names are "false", "true" and "selective" (TOML booleans
// are accepted for the first two).
enum class CheckpointMode : uint8_t { kOff, kAll, kSelective };
const std::vector<std::string>& CheckpointModeNames();

struct TrainingConfig {
  int64_t steps = 100;
  int64_t global_batch_tokens = 8192;  // tokens drawn per step
  int64_t micro_batch_tokens = 2048;   // capacity C of one micro-batch
  int64_t seed = 1;
  int64_t threads = 2;
  int64_t log_interval = 10;
  int64_t eval_interval = 0;  // 0: no validation
  double grad_clip = 1.0;     // <= 0 disables clipping
  // Activation checkpointing (docs/OFFLOAD.md, "Activations"): false keeps every layer's
  // activations, true recomputes each layer from its saved input in backward, "selective" chooses
  // per layer to keep, recompute or (with offload.activations) offload, from the cost model and
  // training.activation_memory.
  CheckpointMode checkpoint_activations = CheckpointMode::kOff;
  // selective: MiB the layers' activations may take; 0: what the machine has left (the smaller
  // of MemAvailable and the memory cgroup's room) once the rest of the run's estimate is taken.
  int64_t activation_memory = 0;
  // fp32, or bf16 matrix multiplications with fp32 accumulation and fp32 master weights
  // (ModelOptions::precision; docs/RUNTIME.md "bf16").
  Precision precision = Precision::kF32;
  NonFinitePolicy nonfinite = NonFinitePolicy::kStop;
  int64_t nonfinite_limit = 5;  // skip: consecutive non-finite steps before the run stops
  // "cpu" or "cuda". Today every run computes on the CPU: "cuda" is accepted and the run says
  // once why it runs on CPU (ChooseComputeDevice in runtime/backend.h; docs/CUDA.md).
  Device device = Device::kCpu;
};
// The names of training.device, in enum order ("cpu", "cuda").
const std::vector<std::string>& DeviceNames();

struct OptimizerConfig {
  double lr = 3e-4;
  double min_lr = 3e-5;
  int64_t warmup_steps = 10;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

struct DataConfig {
  std::string path;                  // a dataset prefix, or a blend "0.3 pathA 0.7 pathB"
  double validation_fraction = 0.0;  // share of sequences held out for validation
};

struct CheckpointConfig {
  std::string dir = "runs/default";
  int64_t interval = 0;  // steps between checkpoints; 0: only at the end and on a signal
  int64_t keep = 3;
  // The dtype of the weights in model.safetensors: auto keeps each tensor's dtype as read from
  // --init-from (or the checkpoint resumed), float32 for weights seqmesh initialized.
  ExportDType export_dtype = ExportDType::kAuto;
};

// The HDP planner of a job (scheduler/planner.h): balanced (DP-Balance), naive (HDP without
// balance), pow2 (Megatron-style power-of-two rings), static (a DP x CP mesh).
enum class PlannerKind { kBalanced, kNaive, kPow2, kStatic };
// The online refit of the cost file from measured passes (scheduler/refit.h): predict (the
// default) predicts each step with it and plans with the file alone (plans stay reproducible),
// plan plans with it too (plans then depend on timings), off ignores measurements.
enum class RefitMode { kPredict, kPlan, kOff };
// The names in config files, in enum order.
const std::vector<std::string>& PlannerNames();
const std::vector<std::string>& RefitNames();
const std::string& Name(PlannerKind planner);
const std::string& Name(RefitMode refit);
// The choice a name stands for; an unknown name throws, listing the valid ones.
PlannerKind PlannerNamed(const std::string& name);
RefitMode RefitNamed(const std::string& name);

// Multi-process runs (seqmesh launch / coordinator / worker).
struct DistributedConfig {
  PlannerKind planner = PlannerKind::kBalanced;
  std::string cost;     // cost file for the planner; empty: a built-in CPU model
  int64_t context = 0;  // static planner's context L; 0: the global batch's longest
  RefitMode refit = RefitMode::kPredict;
  double heartbeat_timeout_s = 30;  // a worker silent this long is declared dead
  double comm_deadline_s = 120;     // the longest a collective or ring exchange may wait
  // ByteScale's selective offload (DESIGN.md section 4, Eq. 3; docs/OFFLOAD.md, "HDP selective
  // offload"): the planner gives a long sequence fewer ranks with an offload ratio r, and the
  // workers offload that many of its layers' saved inputs to offload.activations' target.
  bool offload = false;
};

// Where AdamW's state (master weights and both moments) lives: in memory with the parameters
// (none), in pinned host memory (cpu) or in an extent file on SSD (nvme). DeepSpeed's
// zero_optimization.offload_optimizer.device; docs/OFFLOAD.md maps every key of [offload].
enum class OffloadDevice { kNone, kCpu, kNvme };
const std::vector<std::string>& OffloadDeviceNames();
const std::string& Name(OffloadDevice device);

struct OffloadConfig {
  OffloadDevice optimizer = OffloadDevice::kNone;
  std::string nvme_path = "/var/tmp";  // directory of the scratch file (on a local disk)
  bool pin_memory = true;              // lock the staging arena (mlock)
  int64_t buffer_count = 3;            // nvme staging buffers: read i+1 || update i || write i-1
  int64_t sub_group_size = int64_t{1} << 21;  // elements per sub-group (12 bytes each staged)
  int64_t block_size = int64_t{1} << 20;      // bytes per I/O request (aio.block_size)
  int64_t queue_depth = 32;  // requests in flight (aio.queue_depth); from the sweep in BENCHMARKS
  // Where the saved inputs of checkpointed layers go between forward and backward: the model's
  // memory (none), pinned host memory (cpu) or the SSD scratch file in nvme_path (nvme).
  OffloadDevice activations = OffloadDevice::kNone;
  // The model's weights between uses (docs/OFFLOAD.md, "Parameters"): in memory (none) or on the
  // SSD scratch file, a layer's group read ahead of its use (nvme, with the optimizer offloaded
  // to nvme too; it saves memory in a world of one, where ZeRO-1's flat buffers are not held).
  OffloadDevice parameters = OffloadDevice::kNone;
  int64_t prefetch_depth = 2;  // activations: offloaded layers read ahead in backward
};

struct MetricsConfig {
  std::string jsonl;        // metrics file; empty: <checkpoint.dir>/metrics.jsonl
  bool tensorboard = true;  // also write each step's scalars to <checkpoint.dir>/tensorboard/
  bool trace = true;        // each rank writes a Perfetto trace to <checkpoint.dir>/trace/
};

// One key of the configuration schema, for help texts.
struct ConfigKey {
  std::string name;           // "section.key"
  std::string type;           // "integer", "number", "boolean", "string", or "one of a, b or c"
  std::string default_value;  // as TOML writes it
};

struct RunConfig {
  ModelConfig model;
  TrainingConfig training;
  OptimizerConfig optimizer;
  DataConfig data;
  CheckpointConfig checkpoint;
  DistributedConfig distributed;
  OffloadConfig offload;
  MetricsConfig metrics;
  // LoRA fine-tuning (docs/LORA.md): rank 0 (the default) trains every weight; rank >= 1 freezes
  // the base and trains adapters on lora.targets.
  LoraConfig lora = DefaultLora();
  static LoraConfig DefaultLora();

  // Defaults, then `path` (if not empty), then each override "section.key=value" (a leading
  // "--" is allowed). Validates the result.
  static RunConfig Load(const std::string& path, const std::vector<std::string>& overrides = {});
  // The same from TOML text (a resolved configuration sent by the coordinator); `source` names
  // it in errors.
  static RunConfig Parse(const std::string& text, const std::string& source);
  std::string ToToml() const;
  void Validate() const;
  // Every key of the schema, in schema order, with its type and default.
  static std::vector<ConfigKey> Keys();
  // Every key with this config's value as TOML writes it, in schema order.
  std::vector<std::pair<std::string, std::string>> Values() const;
  AdamWConfig adamw() const;
  LrSchedule schedule() const;
  // The metrics file: metrics.jsonl if set, else <checkpoint.dir>/metrics.jsonl.
  std::string metrics_path() const;
  // Where TensorBoard event files go: <checkpoint.dir>/tensorboard (metrics.tensorboard).
  std::string tensorboard_dir() const;
  // Where the ranks' traces go: <checkpoint.dir>/trace (metrics.trace).
  std::string trace_dir() const;

 private:
  // `text` null: read `path` (none if empty).
  static RunConfig FromText(const std::string* text, const std::string& path,
                            const std::vector<std::string>& overrides);
};

}  // namespace seqmesh
