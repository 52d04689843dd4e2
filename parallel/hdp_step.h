// HdpStep: one rank's part of an HDP training step (DESIGN.md section 3, steps 3 and 4), the one
// step path of every training command.
//
// It owns the model, the StepExecutor that runs the rank's micro-batches of a StepPlan, and the
// GradSync that reduces gradients over all ranks and applies the ZeRO-1 AdamW step, and it wires
// them together:
//   - gradient buckets are the model's ParamLayout groups (one per layer, one for the embedding,
//     one for the final norm and lm_head), started in the layout's finish order on every rank;
//   - the model's gradient-ready hook hands a group to GradSync only during the rank's last
//     backward of the step (earlier backwards still add to the gradients), and its progress hook
//     polls the reductions in flight;
//   - the activation arena holds the most tokens a rank runs in one pass: a local micro-batch of
//     `capacity` tokens, or a ring position's two zigzag chunks (ActivationTokens).
// A rank with no micro-batch in a plan still joins every reduction (GradSync::Step starts the
// buckets it never finished), so ranks may run different numbers of micro-batches.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/grad_sync.h"
#include "parallel/ring_attention.h"
#include "parallel/step_executor.h"
#include "proto/step_plan.pb.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"

namespace seqmesh {

struct HdpStepOptions {
  int64_t capacity = 0;                   // tokens of one rank's micro-batch (micro_batch_tokens)
  std::vector<bool> checkpoint_layers;    // per layer; empty: none
  std::shared_ptr<Backend> backend;       // where the model computes; null: CPU, one thread
  OptimizerStateFactory optimizer_state;  // where this rank's AdamW state lives; null: memory
  // LoRA (ModelOptions::lora): rank 0 trains every weight; otherwise gradient sync and ZeRO-1
  // cover only the adapters (Model::trainable()).
  Precision precision = Precision::kF32;
  LoraConfig lora = ModelOptions{}.lora;
  uint64_t lora_seed = 1;
  // Per layer, a subset of checkpoint_layers (ModelOptions::offload_layers): the saved input
  // goes out through the ActivationStore the caller gives model().UseActivationStore.
  std::vector<bool> offload_layers = {};
  // distributed.offload (ByteScale Eq. 3): the plan's micro-batches carry offload ratios and may
  // hold more than `capacity` tokens. The model then lays its layers out per pass from one pool
  // (ModelOptions::pass_pool_bytes of Model::OffloadPassPoolBytes; checkpoint_layers and
  // offload_layers must be empty): a micro-batch with ratio r offloads its lowest
  // Model::OffloadedLayersFor(r) layers through the ActivationStore the caller gives
  // model().UseActivationStore (one made for every layer but the last, at
  // Model::OffloadMaxPassTokens rows).
  bool plan_offload = false;
};

struct HdpStepResult {
  StepResult run;        // this rank's passes
  double grad_norm = 0;  // global, before clipping
};

class HdpStep {
 public:
  // The model is built here (random weights from InitRandom(seed) of the caller, or loaded).
  // `comm` reduces the gradients; `link` carries ring exchanges; both must outlive the step.
  HdpStep(const ModelConfig& config, const HdpStepOptions& options, Communicator& comm,
          RingLink& link, const AdamWConfig& adamw);
  HdpStep(const HdpStep&) = delete;
  HdpStep& operator=(const HdpStep&) = delete;

  // The most tokens one pass holds on a rank for micro-batches of `capacity` tokens: a sequence
  // of at most D * capacity tokens split over D ranks gives each rank two of its 2D zigzag
  // chunks, each at most ceil(capacity / 2) tokens.
  static int64_t ActivationTokens(int64_t capacity);

  // Zeroes the gradients, runs this rank's micro-batches of `plan`, reduces the gradients over
  // all ranks and updates the parameters with AdamW (clipped to a global norm of max_norm; <= 0:
  // no clipping). Every rank calls it for every step.
  HdpStepResult Run(const proto::StepPlan& plan, uint64_t target_tokens, const TokenReader& read,
                    float lr, float max_norm);

  // The two halves of Run, for callers that time them apart (the ring profiler): Execute zeroes
  // the gradients and runs the passes; Update reduces and steps. With Overlap::kNone the
  // reductions all start in Update instead of during the last backward (the profiler times
  // passes alone, and may Execute several times before one Update).
  enum class Overlap { kDuringBackward, kNone };
  StepResult Execute(const proto::StepPlan& plan, uint64_t target_tokens, const TokenReader& read,
                     Overlap overlap = Overlap::kDuringBackward);
  double Update(float lr, float max_norm);
  // Forward only: this rank's share of the loss of `plan` (validation); no gradients.
  double Evaluate(const proto::StepPlan& plan, uint64_t target_tokens, const TokenReader& read) {
    return executor_.Evaluate(plan, target_tokens, read);
  }

  Model& model() { return model_; }
  const Model& model() const { return model_; }
  GradSync& sync() { return sync_; }
  const GradSync& sync() const { return sync_; }
  int rank() const { return rank_; }

 private:
  ModelOptions ModelOptionsFor(const ModelConfig& config, const HdpStepOptions& options);
  void LayerGradsReady(int64_t layer);

  int rank_;
  std::vector<std::vector<int>> buckets_of_layer_;  // layer + 1 -> buckets (0: the -1 call)
  Model model_;
  GradSync sync_;
  StepExecutor executor_;
  bool overlap_ = true;  // the current Execute hands finished buckets to GradSync
};

}  // namespace seqmesh
