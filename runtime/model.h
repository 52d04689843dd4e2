// A Llama-style decoder with hand-written forward and backward over one packed micro-batch
// (llm.c style: no autograd engine; parameters, gradients and activations are named views of
// three arenas sized from the config once).
//
//   loss = Forward(batch, normalizer)   // sum of token losses / normalizer; keeps activations
//   Backward()                          // grads += d loss / d params
//   Decode(tokens, cache, logits)       // inference: the next positions of one sequence against
//                                       // a KvCache (runtime/kv_cache.h; generation.h's loop)
//
// Token-level loss: with normalizer = the token count of a whole global batch, the gradients of
// its micro-batches (or, later, of its ranks) add up to exactly the whole-batch gradient.
//
// The seams (docs/SEAMS.md): every kernel runs through a Backend (runtime/backend.h; the model
// never calls runtime/cpu/), weights are acquired group by group from a ParameterStore, and the
// saved inputs of checkpointed layers go through an ActivationStore. The built-in stores keep
// everything in the model's arenas.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/activation_store.h"
#include "runtime/attention.h"
#include "runtime/backend.h"
#include "runtime/kv_cache.h"
#include "runtime/layers.h"
#include "runtime/lora_adapter.h"
#include "runtime/parameter_store.h"
#include "runtime/rope.h"
#include "runtime/tensor.h"

namespace seqmesh {

struct HfSource;  // runtime/hf_checkpoint.h

struct ModelConfig {
  int64_t vocab = 0;
  int64_t hidden = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t ffn = 0;
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  bool tie_embeddings = false;
  RopeScaling rope_scaling;  // default: none (positions as trained)

  int64_t head_dim() const { return hidden / heads; }
  // Errors name the field: heads must divide hidden, kv_heads must divide heads, head_dim even...
  void Validate() const;
  // Parameters counted once (a tied lm_head adds none).
  int64_t NumParams() const;
  // Parameters that take part in matrix multiplications (all but the embedding table, plus the
  // lm_head, which is the embedding table when tied): the N of "6 N tokens".
  int64_t NumMatmulParams() const;
};

// One packed micro-batch of variable-length documents.
struct Batch {
  const int32_t* tokens = nullptr;      // (T) token ids
  const int32_t* targets = nullptr;     // (T) next-token targets, kIgnoreIndex where none
  const int32_t* cu_seqlens = nullptr;  // (docs + 1) document boundaries, 0 .. T
  int64_t num_docs = 0;
  int64_t num_tokens = 0;
  // (T) RoPE positions; null means each document starts at position 0.
  const int32_t* positions = nullptr;
  // Optional: document `split_doc` is this rank's part of a sequence split over several ranks;
  // its attention is computed by `split_attention` (ring attention), the other documents' here.
  // Its positions (in `positions`) and targets are those of the whole sequence.
  int64_t split_doc = -1;
  ExternalAttention* split_attention = nullptr;
  // LoRA dropout (ModelOptions::lora): the masks of this micro-batch are a function of this key
  // and the model's lora_seed; 0 means no dropout (validation, inference). The step executor
  // derives it from the step, the rank and the pass, so a resumed run draws the same masks.
  uint64_t dropout_key = 0;
  // A model with a per-pass activation pool (ModelOptions::pass_pool_bytes): the lowest
  // `offloaded_layers` layers are checkpointed with their saved input offloaded through the
  // ActivationStore, the others keep their activations (Model::OffloadedLayersFor maps a plan's
  // offload ratio to this count). 0 on a model with a fixed layout.
  int64_t offloaded_layers = 0;
  // A Backward follows this Forward (a training pass): the head's backward GEMMs then run in
  // Forward, one logits chunk at a time while its gradient is at hand (no chunk is computed
  // twice). False (validation, inference, a caller that may not call Backward): Forward leaves
  // the gradients alone.
  bool backward_follows = false;
};

// How the model computes (training.precision): fp32 everywhere, or bf16 matrix multiplications
// (weights converted to bf16 as each layer is acquired, the saved GEMM inputs stored in bf16)
// with fp32 accumulation, fp32 master weights, norms, attention, softmax and gradients.
enum class Precision : uint8_t { kF32, kBf16 };

struct ModelOptions {
  int64_t max_tokens = 0;               // capacity of one micro-batch; sizes the activations
  std::vector<bool> checkpoint_layers;  // per layer: recompute activations in backward
  // Per layer (a subset of checkpoint_layers; empty: none): the layer's saved input leaves the
  // model through an ActivationStore that copies it out (offload/: pinned host memory or SSD),
  // so its residual-stream slot is not kept: those layers' inputs share two buffers. A model
  // with any such layer needs UseActivationStore with a copying store before its Forward.
  std::vector<bool> offload_layers;
  // Called during Backward as soon as a layer's parameter gradients are final for this
  // micro-batch: layers in reverse order, then -1 for the embedding, the final norm and the
  // lm_head (whose gradients are complete only after the embedding's backward). Gradient sync
  // starts reducing a finished layer's bucket here while backward continues.
  std::function<void(int64_t layer)> on_layer_grads_ready;
  // Called a few times within each layer's backward (between its large operations): gradient
  // sync polls its reductions in flight here, since MPI moves data only inside MPI calls.
  std::function<void()> on_backward_progress;
  // Where compute runs (and on how many threads); null: a CPU backend on one thread. Shared with
  // whoever else computes for this model (AdamW, ring attention).
  std::shared_ptr<Backend> backend;
  // false: a model for inference only (Forward for logits and loss, Decode): no gradient arena
  // and no backward buffers, and every layer shares one set of activations (nothing is kept for
  // a backward); grads() is empty and Backward() an error.
  bool gradients = true;
  // LoRA (docs/LORA.md): rank > 0 adds adapters A (r x in) and B (out x r) to each targeted
  // projection, y = x W^T + (alpha / r) dropout(x) A^T B^T. The base weights are then frozen:
  // grads() and trainable() cover only the adapters, and backward computes no base weight
  // gradient. A is drawn from lora_seed (PEFT's kaiming-uniform bound 1 / sqrt(in)), B is zero.
  Precision precision = Precision::kF32;
  LoraConfig lora = [] {
    LoraConfig off;
    off.rank = 0;
    return off;
  }();
  uint64_t lora_seed = 1;
  // > 0: the layers' activations and the residual-stream slots are carved for each pass from one
  // pool of this many bytes, by the pass's tokens and Batch::offloaded_layers (the plan's offload
  // ratio, distributed.offload), instead of the fixed layout of checkpoint_layers and
  // offload_layers (which must then be empty). Size it as the largest PassActivationBytes the
  // passes need; a pass that does not fit is an error naming both sizes.
  size_t pass_pool_bytes = 0;
  // Rows of logits the head computes at once (the logits buffer is this many rows of the
  // vocabulary); 0: as many as fit 64 MiB (at least 1, at most max_tokens). A pass longer than
  // this computes the loss chunk by chunk and recomputes each chunk's logits in backward (one
  // lm_head GEMM more), so the logits never take tokens x vocab.
  int64_t head_chunk_tokens = 0;
};

class Model {
 public:
  Model(const ModelConfig& config, const ModelOptions& options);
  Model(Model&&) = default;

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  Backend& backend() const { return *options_.backend; }
  const std::shared_ptr<Backend>& shared_backend() const { return options_.backend; }

  // The stores the model goes through (ParameterStore: weights acquired per ParamLayout group;
  // ActivationStore: saved inputs of checkpointed layers). Null restores the built-in in-memory
  // store. Not owned; a store must outlive its use and must not change within a micro-batch.
  void UseParameterStore(ParameterStore* store);
  void UseActivationStore(ActivationStore* store);
  // Sweeps over params() outside a pass (InitRandom, LoadHfWeights, SaveHfModel) bracket each
  // tensor with these (a parameter store that keeps weights off the device: offload/).
  void SetParamAccess(ParamAccess access) { param_access_ = std::move(access); }
  const ParamAccess& param_access() const { return param_access_; }

  // Parameters with Hugging Face Llama names, in a fixed order; gradients in the same order
  // named "grad.<name>".
  const std::vector<Tensor>& params() const { return params_; }
  const std::vector<Tensor>& grads() const { return grads_; }
  const Tensor& Param(const std::string& name) const;
  const ParamLayout& param_layout() const { return layout_; }
  // What the optimizer updates, in the order of grads(), and its groups (gradient sync's
  // buckets): params() and param_layout(), or with LoRA the adapters (lora_A, lora_B of each
  // target in params() order, named "<weight name minus .weight>.lora_A.weight"), one group per
  // layer.
  const std::vector<Tensor>& trainable() const { return lora_ ? adapters_ : params_; }
  const ParamLayout& trainable_layout() const { return lora_ ? adapter_layout_ : layout_; }
  bool lora() const { return lora_; }
  size_t param_bytes() const { return param_arena_.bytes(); }
  size_t activation_bytes() const { return act_arena_.bytes(); }
  // What PlanActivations allocates per layer at `tokens` rows (64-byte-aligned tensors): the
  // activations a layer keeps for its backward when it is not checkpointed (checkpointed layers
  // share one such set), and one residual-stream slot (a layer's input, which a checkpointed
  // layer keeps unless it is offloaded). The selective checkpointing policy sizes from these.
  static size_t LayerActivationBytes(const ModelConfig& config, int64_t tokens,
                                     Precision precision);
  static size_t ResidualSlotBytes(const ModelConfig& config, int64_t tokens);
  // ByteScale's offload ratio r of a micro-batch (Eq. 3: the fraction of layers 2..l-1 whose
  // activations leave) as the layers this model offloads: 0 for r = 0 (or fewer than 3 layers),
  // else r (l - 2) + 1, rounded to the nearest integer. An offloaded layer is checkpointed (its
  // input goes out; backward recomputes the rest), so one set of activations for the recompute
  // stays resident: with k = r (l - 2) + 1 layers offloaded, l - k + 1 = 2 + (1 - r)(l - 2) layers'
  // activations are resident, Eq. 3's count. r must be a multiple of 1 / (l - 2) (the planner
  // quantizes it).
  static int64_t OffloadedLayersFor(double ratio, int64_t layers);
  // The bytes a pass of `tokens` with its `offloaded` lowest layers offloaded carves from the
  // pass pool: the kept layers' activations and input slots, one recompute set and two shared
  // input slots when any layer is offloaded, and the final norm's input slot.
  static size_t PassActivationBytes(const ModelConfig& config, int64_t tokens, int64_t offloaded,
                                    Precision precision);
  // The rows of logits the head computes at once (ModelOptions::head_chunk_tokens; 0: 64 MiB of
  // them) for passes of up to `max_tokens`.
  static int64_t HeadChunkTokens(const ModelConfig& config, int64_t max_tokens,
                                 int64_t chunk_tokens = 0);
  // The most tokens one pass holds on a rank for micro-batches of `capacity` tokens: a sequence
  // split over D ranks gives each rank two of its 2D zigzag chunks, each at most
  // ceil(capacity / 2) tokens (HdpStep::ActivationTokens).
  static int64_t PassTokens(int64_t capacity);
  // distributed.offload: the most tokens a pass may hold with `offloaded` of `layers` layers
  // offloaded at capacity C, the plan validator's bound C l / (l - k + 1) (k = 0: PassTokens);
  // the most over every count; and the pass pool (ModelOptions::pass_pool_bytes) that holds
  // every such pass.
  static int64_t OffloadPassTokens(int64_t capacity, int64_t layers, int64_t offloaded);
  static int64_t OffloadMaxPassTokens(int64_t capacity, int64_t layers);
  static size_t OffloadPassPoolBytes(const ModelConfig& config, int64_t capacity,
                                     Precision precision);

  // The Hugging Face directory the weights were last loaded from (its config.json, weight dtypes
  // and tokenizer files), which SaveHfModel writes back; null for weights of seqmesh's own.
  // LoadHfWeights sets it.
  const std::shared_ptr<const HfSource>& hf_source() const { return hf_source_; }
  void set_hf_source(std::shared_ptr<const HfSource> source) { hf_source_ = std::move(source); }

  // Normal(0, std) matrices (std = 0.02 by default; the embedding as well), ones for norms.
  void InitRandom(uint64_t seed, float std = 0.02f);
  void ZeroGrad();

  // Runs the forward pass and the loss; keeps what Backward needs (the batch itself need not
  // outlive the call). Returns
  // sum(token losses) / normalizer. If logits_out is given, (T, vocab) logits are copied there.
  float Forward(const Batch& batch, float normalizer, float* logits_out = nullptr);
  // Accumulates the gradients of the last Forward's loss into grads().
  void Backward();

  // Incremental decoding (runtime/kv_cache.h): runs the n = tokens.size() <= max_tokens tokens at
  // positions cache.length() .. cache.length() + n - 1 of one sequence, each attending to the
  // cached positions and to the new ones up to itself; appends their keys and values to the cache
  // and advances it. The same kernels as Forward. logits_out gets the logits of the last token
  // (vocab), or of every token (n, vocab) when all_logits. A prompt is prefilled in one call (or
  // in pieces of at most max_tokens), then each new token is one call. Keeps nothing for
  // Backward.
  void Decode(std::span<const int32_t> tokens, KvCache& cache, float* logits_out,
              bool all_logits = false);

 private:
  struct LayerParams {
    Tensor in_norm, qkv, o, post_norm, gate_up, down;  // qkv, gate_up: fused views
  };
  struct LayerActs {
    Tensor xn1, rstd1, qkv, attn, lse, x2, xn2, rstd2, gate_up, h;
  };
  struct HeadParams {
    Tensor norm, lm_head;
  };
  void BuildParams(Arena& arena, std::vector<Tensor>& list, const std::string& prefix);
  // Views of one layer's group (params [first, last) of a ParamLayout group), with the fused
  // qkv and gate_up matrices; checks that the group is laid out as the arena lays it out.
  LayerParams LayerView(std::span<const Tensor> group, int layer) const;
  HeadParams HeadView(std::span<const Tensor> head, std::span<const Tensor> embed) const;
  void PlanActivations();
  // A tensor of the activations (the arena's placeholder while planning, or a view carved from
  // the pass pool).
  using ActAdd = std::function<Tensor(const std::string& name, DType dtype, Shape shape)>;
  // One layer's activations of `rows` tokens, in LayerActivationBytes' order.
  LayerActs AddLayerActs(const std::string& prefix, int64_t rows, const ActAdd& add) const;
  // The residual-stream slots (layers + 1) of `rows` tokens; offloaded layers' inputs share two.
  std::vector<Tensor> AddResidualSlots(int64_t rows, const ActAdd& add) const;
  // Pass pool: carves resid_, acts_ and recompute_ for a pass of `tokens` with the lowest
  // `offloaded` layers offloaded (options_.checkpoint_layers / offload_layers set to match).
  void CarvePass(int64_t tokens, int64_t offloaded);
  void PrepareBatch(const Batch& batch, float normalizer);
  // With a cache (Decode), the layer's keys and values are appended to cache->k(layer), v(layer)
  // and attention reads them there.
  void LayerForward(const LayerParams& w, const LayerActs& a, const Tensor& x, const Tensor& out,
                    KvCache* cache = nullptr, int64_t layer = -1);
  void LayerBackward(const LayerParams& w, int l, const LayerActs& a, const Tensor& x);
  // The embedding of tokens_ and every layer over the first num_tokens_ rows into resid_; with a
  // cache (Decode) attention reads and extends it and nothing is saved for backward.
  void ForwardLayers(KvCache* cache);
  // rope_cos_, rope_sin_ of the first num_tokens_ positions_.
  void FillRopeTables();
  // logits_ rows [first, num_tokens_): the final norm and the lm_head.
  // The final norm of rows [first, num_tokens_) into xf_ (and rstdf_).
  void HeadNorm(const HeadParams& h, int64_t first);
  // logits_ rows [0, end - begin) = xf_ rows [begin, end) W_lm^T (end - begin <= head_chunk_).
  void HeadLogits(const HeadParams& h, int64_t begin, int64_t end);
  // The lm_head's backward of rows [begin, end), their logits' gradient in logits_.
  void HeadChunkBackward(const HeadParams& h, int64_t begin, int64_t end);
  float HeadForward(const Batch& batch, float normalizer, float* logits_out);
  void HeadBackward();
  // Acquires the final norm and lm_head (and the embedding when tied, for the lm_head).
  HeadParams AcquireHead();
  void ReleaseHead();
  int head_group() const { return static_cast<int>(config_.layers) + 1; }
  int64_t qkv_width() const;
  Tensor Live(const Tensor& t) const;  // the first num_tokens_ rows of an activation

  // LoRA: one adapted projection of a layer. Its output is columns [col, col + out) of the
  // layer's (fused) output rows.
  struct Adapter {
    Tensor a, b, da, db;
    int64_t col = 0;
    int module = 0;  // index into LoraModules()
  };
  void BuildAdapters();
  // bf16: the layer's matrices converted into the bf16 compute copies (norms stay f32); f32: w.
  LayerParams ComputeWeights(const LayerParams& w);
  // bf16: widens x (bf16) into lora_x_ for an adapter; f32: x itself.
  Tensor AdapterInput(const Tensor& x, int64_t in);
  Tensor Scratch(const Tensor& buffer, int64_t cols) const;  // (num_tokens_, cols) view
  uint64_t DropoutKey(int64_t layer, int module) const;
  // y (T, ld) columns [col, col + out) += (alpha / r) dropout(x) A^T B^T.
  void AdapterForward(const Adapter& m, int64_t layer, const Tensor& x, const Tensor& y);
  // dy (T, ld): the gradient of y; dA, dB += and dx (T, in) += the adapter's share.
  void AdapterBackward(const Adapter& m, int64_t layer, const Tensor& x, const Tensor& dy,
                       const Tensor& dx);
  // The adapters of `layer` for projections [first, last) of LoraModules().
  void AdaptersForward(int64_t layer, int first, int last, const Tensor& x, const Tensor& y);
  void AdaptersBackward(int64_t layer, int first, int last, const Tensor& x, const Tensor& dy,
                        const Tensor& dx);

  ModelConfig config_;
  ModelOptions options_;
  AttentionDims dims_;
  std::vector<double> rope_inv_freq_;  // (head_dim / 2): config_'s theta and scaling
  std::shared_ptr<const HfSource> hf_source_;

  Arena param_arena_{"parameters"};
  Arena grad_arena_{"gradients"};
  Arena act_arena_{"activations"};
  std::vector<Tensor> params_, grads_;
  ParamLayout layout_;
  std::vector<LayerParams> dw_;
  Tensor d_embed_, d_norm_, d_lm_head_;
  std::unique_ptr<InMemoryParameterStore> own_param_store_;
  std::unique_ptr<InMemoryActivationStore> own_act_store_;
  ParameterStore* param_store_ = nullptr;
  ParamAccess param_access_;
  ActivationStore* act_store_ = nullptr;

  Tensor pass_pool_;             // ModelOptions::pass_pool_bytes (f32 words), or none
  std::vector<LayerActs> acts_;  // per layer; checkpointed layers share recompute_
  LayerActs recompute_;
  std::vector<Tensor> resid_;  // (layers + 1) x (T, H): the residual stream between layers
  Tensor xf_, rstdf_, logits_, rope_cos_, rope_sin_, positions_, tokens_;
  // The head's chunk (rows of logits_), and for a backward that recomputes chunks the pass's
  // targets and loss scale.
  int64_t head_chunk_ = 0;
  Tensor targets_;
  float loss_scale_ = 0;
  bool head_done_ = false;  // the last Forward ran the head's backward GEMMs
  Tensor d_resid_, d_xn_, d_attn_, d_qkv_, d_h_, d_gate_up_;

  // LoRA: the adapters (adapters_, adapter_layout_), their gradients (grads_), per layer the
  // adapted projections (layer_adapters_[l][module] or none), scratch for the low-rank products
  // and the frozen norms' unused weight gradient.
  bool lora_ = false;
  float lora_scale_ = 0;
  Arena adapter_arena_{"adapters"};
  std::vector<Tensor> adapters_;
  ParamLayout adapter_layout_;
  std::vector<std::vector<std::optional<Adapter>>> layer_adapters_;
  Tensor lora_u_, lora_du_, lora_d_, lora_x_, frozen_dnorm_;
  uint64_t dropout_key_ = 0;  // the batch's key; 0: no dropout

  // bf16 (Precision::kBf16): the compute copies of one layer's matrices and of the lm_head, and
  // f32 scratch for outputs that are stored in bf16 (a norm's or SwiGLU's, attention's).
  bool bf16_ = false;
  Arena bf16_arena_{"bf16 weights"};
  LayerParams w16_;
  Tensor lm_head16_, f32_out_, attn_f32_;

  // State of the last Forward.
  int64_t num_tokens_ = 0;
  std::vector<AttentionSegment> segments_;  // local documents (all but a split one)
  AttentionSegment split_{};                // rows of the split document, if any
  ExternalAttention* split_attention_ = nullptr;
  bool have_forward_ = false;
};

}  // namespace seqmesh
