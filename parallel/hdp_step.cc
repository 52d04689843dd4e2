#include "parallel/hdp_step.h"

#include "runtime/check.h"

namespace seqmesh {
namespace {

std::vector<size_t> BucketEnds(const ParamLayout& layout) {
  std::vector<size_t> ends;
  for (const ParamLayout::Group& g : layout.groups) ends.push_back(g.last);
  return ends;
}

}  // namespace

int64_t HdpStep::ActivationTokens(int64_t capacity) { return Model::PassTokens(capacity); }

ModelOptions HdpStep::ModelOptionsFor(const ModelConfig& config, const HdpStepOptions& options) {
  ModelOptions mo;
  mo.max_tokens = ActivationTokens(options.capacity);
  mo.checkpoint_layers = options.checkpoint_layers;
  mo.offload_layers = options.offload_layers;
  if (options.plan_offload) {
    SM_CHECK(options.checkpoint_layers.empty() && options.offload_layers.empty())
        << "distributed.offload: the plan says per micro-batch which layers offload; "
           "checkpoint_layers and offload_layers must be empty";
    mo.max_tokens = Model::OffloadMaxPassTokens(options.capacity, config.layers);
    mo.pass_pool_bytes = Model::OffloadPassPoolBytes(config, options.capacity, options.precision);
  }
  mo.backend = options.backend;
  mo.precision = options.precision;
  mo.lora = options.lora;
  mo.lora_seed = options.lora_seed;
  // Gradients are final only in the rank's last backward of the step; earlier backwards add.
  mo.on_layer_grads_ready = [this](int64_t layer) {
    if (overlap_ && executor_.in_last_backward()) LayerGradsReady(layer);
  };
  mo.on_backward_progress = [this] {
    if (overlap_ && executor_.in_last_backward()) sync_.Progress();
  };
  return mo;
}

HdpStep::HdpStep(const ModelConfig& config, const HdpStepOptions& options, Communicator& comm,
                 RingLink& link, const AdamWConfig& adamw)
    : rank_(comm.rank()),
      model_(config, ModelOptionsFor(config, options)),
      sync_(comm, model_.trainable(), model_.grads(), adamw, BucketEnds(model_.trainable_layout()),
            model_.trainable_layout().finish_order, options.optimizer_state),
      executor_(model_, link, comm.rank()) {
  const ParamLayout& layout = model_.trainable_layout();
  buckets_of_layer_.assign(config.layers + 1, {});
  for (int b : layout.finish_order) buckets_of_layer_[layout.groups[b].layer + 1].push_back(b);
}

void HdpStep::LayerGradsReady(int64_t layer) {
  SM_CHECK(layer >= -1 && layer + 1 < static_cast<int64_t>(buckets_of_layer_.size()))
      << "gradient-ready hook for layer " << layer << " of " << buckets_of_layer_.size() - 1;
  for (int b : buckets_of_layer_[layer + 1]) sync_.LayerReady(b);
}

StepResult HdpStep::Execute(const proto::StepPlan& plan, uint64_t target_tokens,
                            const TokenReader& read, Overlap overlap) {
  // Gradients handed off to the optimizer's store were given back as zero pages already.
  if (!sync_.gradients_released()) model_.ZeroGrad();
  sync_.GradientsInUse();
  overlap_ = overlap == Overlap::kDuringBackward;
  return executor_.Run(plan, target_tokens, read);
}

double HdpStep::Update(float lr, float max_norm) { return sync_.Step(lr, max_norm); }

HdpStepResult HdpStep::Run(const proto::StepPlan& plan, uint64_t target_tokens,
                           const TokenReader& read, float lr, float max_norm) {
  HdpStepResult result;
  result.run = Execute(plan, target_tokens, read);
  result.grad_norm = Update(lr, max_norm);
  return result;
}

}  // namespace seqmesh
