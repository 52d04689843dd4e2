#include "runtime/model.h"

#include <cmath>
#include <cstring>
#include <numbers>

#include "runtime/layers.h"
#include "runtime/matmul.h"

namespace seqmesh {

void ModelConfig::Validate() const {
  SM_CHECK(vocab >= 1) << "model.vocab must be >= 1, got " << vocab;
  SM_CHECK(hidden >= 1) << "model.hidden must be >= 1, got " << hidden;
  SM_CHECK(layers >= 1) << "model.layers must be >= 1, got " << layers;
  SM_CHECK(heads >= 1) << "model.heads must be >= 1, got " << heads;
  SM_CHECK(kv_heads >= 1) << "model.kv_heads must be >= 1, got " << kv_heads;
  SM_CHECK(ffn >= 1) << "model.ffn must be >= 1, got " << ffn;
  SM_CHECK(hidden % heads == 0) << "model.heads (" << heads << ") must divide model.hidden ("
                                << hidden << ")";
  SM_CHECK(heads % kv_heads == 0) << "model.kv_heads (" << kv_heads << ") must divide model.heads ("
                                  << heads << ")";
  SM_CHECK(head_dim() % 2 == 0) << "head_dim = hidden / heads = " << head_dim()
                                << " must be even for rotary embeddings";
  SM_CHECK(rope_theta > 0) << "model.rope_theta must be > 0, got " << rope_theta;
  SM_CHECK(norm_eps > 0) << "model.norm_eps must be > 0, got " << norm_eps;
}

int64_t ModelConfig::NumParams() const {
  const int64_t hd = head_dim();
  const int64_t per_layer =
      2 * hidden + hidden * heads * hd * 2 + 2 * hidden * kv_heads * hd + 3 * hidden * ffn;
  return vocab * hidden * (tie_embeddings ? 1 : 2) + layers * per_layer + hidden;
}

int64_t ModelConfig::NumMatmulParams() const {
  const int64_t hd = head_dim();
  const int64_t per_layer = hidden * heads * hd * 2 + 2 * hidden * kv_heads * hd + 3 * hidden * ffn;
  return layers * per_layer + vocab * hidden;
}

int64_t Model::qkv_width() const {
  return (config_.heads + 2 * config_.kv_heads) * config_.head_dim();
}

void Model::BuildParams(Arena& arena, std::vector<LayerParams>& layers, Tensor& embed, Tensor& norm,
                        Tensor& lm_head, std::vector<Tensor>& list, const std::string& prefix) {
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim(), qw = c.heads * hd, kw = c.kv_heads * hd;
  struct Pending {
    int layer;
    Tensor *in_norm, *q, *k, *v, *o, *post_norm, *gate, *up, *down;
  };
  std::vector<Pending> pending;
  // The groups of params() as they are added (ParamLayout).
  ParamLayout layout;
  auto end_group = [&](int64_t layer) {
    const size_t first = layout.groups.empty() ? 0 : layout.groups.back().last;
    layout.groups.push_back({first, arena.tensors().size(), layer});
  };
  Tensor* e = arena.Add(prefix + "model.embed_tokens.weight", DType::kF32, {c.vocab, c.hidden});
  end_group(-1);
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = prefix + "model.layers." + std::to_string(l) + ".";
    Pending t{};
    t.layer = l;
    t.in_norm = arena.Add(p + "input_layernorm.weight", DType::kF32, {c.hidden});
    t.q = arena.Add(p + "self_attn.q_proj.weight", DType::kF32, {qw, c.hidden});
    t.k = arena.Add(p + "self_attn.k_proj.weight", DType::kF32, {kw, c.hidden}, /*packed=*/true);
    t.v = arena.Add(p + "self_attn.v_proj.weight", DType::kF32, {kw, c.hidden}, /*packed=*/true);
    t.o = arena.Add(p + "self_attn.o_proj.weight", DType::kF32, {c.hidden, qw});
    t.post_norm = arena.Add(p + "post_attention_layernorm.weight", DType::kF32, {c.hidden});
    t.gate = arena.Add(p + "mlp.gate_proj.weight", DType::kF32, {c.ffn, c.hidden});
    t.up = arena.Add(p + "mlp.up_proj.weight", DType::kF32, {c.ffn, c.hidden}, /*packed=*/true);
    t.down = arena.Add(p + "mlp.down_proj.weight", DType::kF32, {c.hidden, c.ffn});
    pending.push_back(t);
    end_group(l);
  }
  Tensor* n = arena.Add(prefix + "model.norm.weight", DType::kF32, {c.hidden});
  Tensor* head = c.tie_embeddings
                     ? nullptr
                     : arena.Add(prefix + "lm_head.weight", DType::kF32, {c.vocab, c.hidden});
  end_group(-1);
  arena.Allocate();
  // Backward finishes layers last to first, then reports -1: the embedding, then the rest.
  for (int64_t l = c.layers; l >= 1; --l) layout.finish_order.push_back(static_cast<int>(l));
  layout.finish_order.push_back(0);
  layout.finish_order.push_back(static_cast<int>(c.layers + 1));
  layout_ = std::move(layout);

  for (const Tensor& t : arena.tensors()) list.push_back(t);
  embed = *e;
  norm = *n;
  lm_head = head ? *head : *e;
  layers.clear();
  for (const Pending& t : pending) {
    LayerParams lp;
    lp.in_norm = *t.in_norm;
    lp.qkv = Tensor(prefix + "layer" + std::to_string(t.layer) + ".qkv", DType::kF32,
                    {qw + 2 * kw, c.hidden}, t.q->data());
    lp.o = *t.o;
    lp.post_norm = *t.post_norm;
    lp.gate_up = Tensor(prefix + "layer" + std::to_string(t.layer) + ".gate_up", DType::kF32,
                        {2 * c.ffn, c.hidden}, t.gate->data());
    lp.down = *t.down;
    layers.push_back(lp);
  }
}

Model::LayerActs Model::AddLayerActs(const std::string& p) {
  const ModelConfig& c = config_;
  const int64_t t = options_.max_tokens;
  LayerActs a;
  auto add = [&](const char* name, Shape s) { return *act_arena_.Add(p + name, DType::kF32, s); };
  a.xn1 = add("xn1", {t, c.hidden});
  a.rstd1 = add("rstd1", {t});
  a.qkv = add("qkv", {t, qkv_width()});
  a.attn = add("attn", {t, c.heads * c.head_dim()});
  a.lse = add("lse", {c.heads, t});
  a.x2 = add("x2", {t, c.hidden});
  a.xn2 = add("xn2", {t, c.hidden});
  a.rstd2 = add("rstd2", {t});
  a.gate_up = add("gate_up", {t, 2 * c.ffn});
  a.h = add("h", {t, c.ffn});
  return a;
}

Model::Model(const ModelConfig& config, const ModelOptions& options)
    : config_(config), options_(options) {
  config_.Validate();
  SM_CHECK(options_.max_tokens >= 1)
      << "model max_tokens must be >= 1, got " << options_.max_tokens;
  if (options_.checkpoint_layers.empty()) options_.checkpoint_layers.assign(config_.layers, false);
  SM_CHECK(static_cast<int64_t>(options_.checkpoint_layers.size()) == config_.layers)
      << "checkpoint_layers has " << options_.checkpoint_layers.size() << " entries for "
      << config_.layers << " layers";
  dims_ = {static_cast<int>(config_.heads), static_cast<int>(config_.kv_heads),
           static_cast<int>(config_.head_dim())};

  BuildParams(param_arena_, w_, embed_, norm_, lm_head_, params_, "");
  BuildParams(grad_arena_, dw_, d_embed_, d_norm_, d_lm_head_, grads_, "grad.");
  for (Tensor& p : params_) {
    if (p.shape().ndim() == 1) std::fill(p.f32(), p.f32() + p.numel(), 1.0f);
  }

  // Activations: plan every buffer from max_tokens, then one allocation.
  const ModelConfig& c = config_;
  const int64_t t = options_.max_tokens, hd = c.head_dim();
  std::vector<Tensor*> resid;
  for (int l = 0; l <= c.layers; ++l)
    resid.push_back(act_arena_.Add("resid" + std::to_string(l), DType::kF32, {t, c.hidden}));
  // Layers that keep their activations get their own; checkpointed layers share one set.
  std::vector<int> own;
  bool any_checkpoint = false;
  for (int l = 0; l < c.layers; ++l) {
    if (options_.checkpoint_layers[l]) any_checkpoint = true;
  }
  // Arena::Add returns stable pointers; LayerActs copies views, so resolve after Allocate.
  std::vector<std::string> prefixes;
  for (int l = 0; l < c.layers; ++l)
    if (!options_.checkpoint_layers[l]) prefixes.push_back("layer" + std::to_string(l) + ".");
  size_t first_layer_act = act_arena_.tensors().size();
  for (const std::string& p : prefixes) AddLayerActs(p);
  if (any_checkpoint) AddLayerActs("recompute.");
  auto add = [&](const char* name, Shape s) { return act_arena_.Add(name, DType::kF32, s); };
  Tensor* xf = add("xf", {t, c.hidden});
  Tensor* rstdf = add("rstdf", {t});
  Tensor* logits = add("logits", {t, c.vocab});
  Tensor* cosv = add("rope_cos", {t, hd / 2});
  Tensor* sinv = add("rope_sin", {t, hd / 2});
  Tensor* pos = act_arena_.Add("positions", DType::kI32, {t});
  Tensor* tokens = act_arena_.Add("tokens", DType::kI32, {t});
  Tensor* d_resid = add("d_resid", {t, c.hidden});
  Tensor* d_xn = add("d_xn", {t, c.hidden});
  Tensor* d_attn = add("d_attn", {t, c.heads * hd});
  Tensor* d_qkv = add("d_qkv", {t, qkv_width()});
  Tensor* d_h = add("d_h", {t, c.ffn});
  Tensor* d_gate_up = add("d_gate_up", {t, 2 * c.ffn});
  act_arena_.Allocate();

  for (Tensor* r : resid) resid_.push_back(*r);
  // Re-read the layer activations in the order they were added (10 tensors each).
  auto read_acts = [&](size_t i) {
    const auto& ts = act_arena_.tensors();
    LayerActs a;
    a.xn1 = ts[i];
    a.rstd1 = ts[i + 1];
    a.qkv = ts[i + 2];
    a.attn = ts[i + 3];
    a.lse = ts[i + 4];
    a.x2 = ts[i + 5];
    a.xn2 = ts[i + 6];
    a.rstd2 = ts[i + 7];
    a.gate_up = ts[i + 8];
    a.h = ts[i + 9];
    return a;
  };
  size_t next = first_layer_act;
  std::vector<LayerActs> owned;
  for (size_t i = 0; i < prefixes.size(); ++i, next += 10) owned.push_back(read_acts(next));
  if (any_checkpoint) recompute_ = read_acts(next);
  size_t k = 0;
  for (int l = 0; l < c.layers; ++l)
    acts_.push_back(options_.checkpoint_layers[l] ? recompute_ : owned[k++]);

  xf_ = *xf;
  rstdf_ = *rstdf;
  logits_ = *logits;
  rope_cos_ = *cosv;
  rope_sin_ = *sinv;
  positions_ = *pos;
  tokens_ = *tokens;
  d_resid_ = *d_resid;
  d_xn_ = *d_xn;
  d_attn_ = *d_attn;
  d_qkv_ = *d_qkv;
  d_h_ = *d_h;
  d_gate_up_ = *d_gate_up;
}

const Tensor& Model::Param(const std::string& name) const {
  for (const Tensor& p : params_)
    if (p.name() == name) return p;
  SM_CHECK(false) << "the model has no parameter named '" << name << "'";
  __builtin_unreachable();
}

void Model::InitRandom(uint64_t seed, float std) {
  // splitmix64 + Box-Muller: deterministic and independent of the thread count.
  uint64_t state = seed;
  auto next = [&state]() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  auto uniform = [&]() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; };
  for (const Tensor& p : params_) {
    float* d = p.f32();
    if (p.shape().ndim() == 1) {
      std::fill(d, d + p.numel(), 1.0f);
      continue;
    }
    for (int64_t i = 0; i < p.numel(); ++i) {
      const double r = std::sqrt(-2.0 * std::log(uniform()));
      d[i] = static_cast<float>(std * r * std::cos(2.0 * std::numbers::pi * uniform()));
    }
  }
}

void Model::ZeroGrad() { std::memset(grad_arena_.base(), 0, grad_arena_.bytes()); }

Tensor Model::Live(const Tensor& t) const { return t.Rows(0, num_tokens_); }

void Model::LayerForward(int l, const LayerActs& a, const Tensor& x, const Tensor& out) {
  const ModelConfig& c = config_;
  const int64_t t = num_tokens_, hd = c.head_dim(), qw = c.heads * hd, kw = c.kv_heads * hd;
  const int64_t ld = qkv_width();
  const LayerParams& w = w_[l];
  RmsNormForward(x.f32(), w.in_norm.f32(), a.xn1.f32(), a.rstd1.f32(), t, c.hidden, c.norm_eps);
  LinearForward(Live(a.xn1), w.qkv, Live(a.qkv));
  float* qkv = a.qkv.f32();
  RopeApply(qkv, ld, t, c.heads, hd, rope_cos_.f32(), rope_sin_.f32(), false);
  RopeApply(qkv + qw, ld, t, c.kv_heads, hd, rope_cos_.f32(), rope_sin_.f32(), false);
  AttentionIo io{{qkv, ld},          {qkv + qw, ld}, {qkv + qw + kw, ld},
                 {a.attn.f32(), qw}, a.lse.f32(),    options_.max_tokens};
  AttentionForward(dims_, segments_, io, 1.0f / std::sqrt(static_cast<float>(hd)));
  if (split_attention_) {
    const int64_t r = split_.q_begin;
    split_attention_->Forward({qkv + r * ld, ld}, {qkv + r * ld + qw, ld},
                              {qkv + r * ld + qw + kw, ld}, {a.attn.f32() + r * qw, qw},
                              a.lse.f32() + r, options_.max_tokens);
  }
  // x2 = x + attn Wo^T
  std::memcpy(a.x2.f32(), x.f32(), t * c.hidden * sizeof(float));
  Gemm(false, true, t, c.hidden, qw, 1.0f, a.attn.f32(), qw, w.o.f32(), qw, 1.0f, a.x2.f32(),
       c.hidden);
  RmsNormForward(a.x2.f32(), w.post_norm.f32(), a.xn2.f32(), a.rstd2.f32(), t, c.hidden,
                 c.norm_eps);
  LinearForward(Live(a.xn2), w.gate_up, Live(a.gate_up));
  SwiGluForward(a.gate_up.f32(), a.h.f32(), t, c.ffn);
  // out = x2 + h Wd^T
  std::memcpy(out.f32(), a.x2.f32(), t * c.hidden * sizeof(float));
  Gemm(false, true, t, c.hidden, c.ffn, 1.0f, a.h.f32(), c.ffn, w.down.f32(), c.ffn, 1.0f,
       out.f32(), c.hidden);
}

// On entry d_resid_ holds d loss / d out; on exit d loss / d x.
void Model::LayerBackward(int l, const LayerActs& a, const Tensor& x) {
  const ModelConfig& c = config_;
  const int64_t t = num_tokens_, hd = c.head_dim(), qw = c.heads * hd, kw = c.kv_heads * hd;
  const int64_t ld = qkv_width();
  const LayerParams& w = w_[l];
  const LayerParams& dw = dw_[l];
  const Tensor dres = Live(d_resid_);
  // out = x2 + h Wd^T
  auto poll = [&] {
    if (options_.on_backward_progress) options_.on_backward_progress();
  };
  LinearBackwardWeight(dres, Live(a.h), dw.down);
  LinearBackwardInput(dres, w.down, Live(d_h_), false);
  poll();
  SwiGluBackward(a.gate_up.f32(), d_h_.f32(), d_gate_up_.f32(), t, c.ffn);
  LinearBackwardWeight(Live(d_gate_up_), Live(a.xn2), dw.gate_up);
  LinearBackwardInput(Live(d_gate_up_), w.gate_up, Live(d_xn_), false);
  poll();
  // dres becomes d x2: the residual path plus the norm's input gradient.
  RmsNormBackward(d_xn_.f32(), a.x2.f32(), w.post_norm.f32(), a.rstd2.f32(), d_resid_.f32(),
                  dw.post_norm.f32(), t, c.hidden, true);
  // x2 = x + attn Wo^T
  LinearBackwardWeight(dres, Live(a.attn), dw.o);
  LinearBackwardInput(dres, w.o, Live(d_attn_), false);
  poll();
  std::memset(d_qkv_.f32(), 0, t * ld * sizeof(float));
  float* qkv = a.qkv.f32();
  float* dqkv = d_qkv_.f32();
  AttentionIo io{{qkv, ld},          {qkv + qw, ld}, {qkv + qw + kw, ld},
                 {a.attn.f32(), qw}, a.lse.f32(),    options_.max_tokens};
  AttentionBackward(dims_, segments_, io, {d_attn_.f32(), qw}, {dqkv, ld}, {dqkv + qw, ld},
                    {dqkv + qw + kw, ld}, 1.0f / std::sqrt(static_cast<float>(hd)));
  poll();
  if (split_attention_) {
    const int64_t r = split_.q_begin;
    split_attention_->Backward({qkv + r * ld, ld}, {qkv + r * ld + qw, ld},
                               {qkv + r * ld + qw + kw, ld}, {a.attn.f32() + r * qw, qw},
                               a.lse.f32() + r, options_.max_tokens, {d_attn_.f32() + r * qw, qw},
                               {dqkv + r * ld, ld}, {dqkv + r * ld + qw, ld},
                               {dqkv + r * ld + qw + kw, ld});
  }
  RopeApply(dqkv, ld, t, c.heads, hd, rope_cos_.f32(), rope_sin_.f32(), true);
  RopeApply(dqkv + qw, ld, t, c.kv_heads, hd, rope_cos_.f32(), rope_sin_.f32(), true);
  LinearBackwardWeight(Live(d_qkv_), Live(a.xn1), dw.qkv);
  LinearBackwardInput(Live(d_qkv_), w.qkv, Live(d_xn_), false);
  RmsNormBackward(d_xn_.f32(), x.f32(), w.in_norm.f32(), a.rstd1.f32(), d_resid_.f32(),
                  dw.in_norm.f32(), t, c.hidden, true);
}

float Model::Forward(const Batch& batch, float normalizer, float* logits_out) {
  const ModelConfig& c = config_;
  SM_CHECK(batch.num_tokens >= 1) << "the micro-batch is empty";
  SM_CHECK(batch.num_tokens <= options_.max_tokens)
      << "the micro-batch has " << batch.num_tokens << " tokens, more than the model's capacity "
      << "max_tokens = " << options_.max_tokens;
  SM_CHECK(batch.tokens && batch.targets && batch.cu_seqlens)
      << "the micro-batch needs tokens, targets and cu_seqlens";
  SM_CHECK(normalizer > 0) << "the loss normalizer must be > 0, got " << normalizer;
  segments_ = SegmentsFromCuSeqlens(batch.cu_seqlens, batch.num_docs + 1, batch.num_tokens);
  split_attention_ = nullptr;
  if (batch.split_doc >= 0) {
    SM_CHECK(batch.split_doc < batch.num_docs)
        << "split_doc " << batch.split_doc << " is not a document of the micro-batch ("
        << batch.num_docs << " documents)";
    SM_CHECK(batch.split_attention != nullptr)
        << "document " << batch.split_doc << " is split over ranks but no split_attention is given";
    SM_CHECK(batch.positions != nullptr)
        << "a split document needs the positions of its tokens in the whole sequence";
    split_ = segments_[batch.split_doc];
    SM_CHECK(split_.q_len == batch.split_attention->rows())
        << "split document " << batch.split_doc << " has " << split_.q_len
        << " tokens but its split attention expects " << batch.split_attention->rows();
    segments_.erase(segments_.begin() + batch.split_doc);
    split_attention_ = batch.split_attention;
  }
  num_tokens_ = batch.num_tokens;
  // Kept for the embedding's backward: the caller's batch need not outlive Forward.
  std::memcpy(tokens_.i32(), batch.tokens, batch.num_tokens * sizeof(int32_t));
  have_forward_ = false;
  const int64_t t = num_tokens_;

  int32_t* pos = positions_.i32();
  if (batch.positions) {
    std::memcpy(pos, batch.positions, t * sizeof(int32_t));
    for (int64_t i = 0; i < t; ++i)
      SM_CHECK(pos[i] >= 0) << "position " << pos[i] << " of token " << i << " is negative";
  } else {
    PositionsFromCuSeqlens(batch.cu_seqlens, batch.num_docs + 1, pos);
  }
  RopeTable(pos, t, static_cast<int>(c.head_dim()), c.rope_theta, rope_cos_.f32(), rope_sin_.f32());

  EmbeddingForward(batch.tokens, t, embed_.f32(), c.vocab, c.hidden, resid_[0].f32());
  for (int l = 0; l < c.layers; ++l) LayerForward(l, acts_[l], resid_[l], resid_[l + 1]);
  RmsNormForward(resid_[c.layers].f32(), norm_.f32(), xf_.f32(), rstdf_.f32(), t, c.hidden,
                 c.norm_eps);
  LinearForward(Live(xf_), lm_head_, Live(logits_));
  if (logits_out) std::memcpy(logits_out, logits_.f32(), t * c.vocab * sizeof(float));
  // From here logits_ holds d(loss_sum / normalizer) / d logits.
  const double loss_sum =
      CrossEntropyForwardBackward(logits_.f32(), batch.targets, t, c.vocab, 1.0f / normalizer);
  have_forward_ = true;
  return static_cast<float>(loss_sum / normalizer);
}

void Model::Backward() {
  SM_CHECK(have_forward_)
      << "Backward() needs a Forward() first (each Forward allows one Backward)";
  have_forward_ = false;
  const ModelConfig& c = config_;
  const int64_t t = num_tokens_;
  // logits = xf W_lm^T
  LinearBackwardWeight(Live(logits_), Live(xf_), d_lm_head_);
  LinearBackwardInput(Live(logits_), lm_head_, Live(d_xn_), false);
  RmsNormBackward(d_xn_.f32(), resid_[c.layers].f32(), norm_.f32(), rstdf_.f32(), d_resid_.f32(),
                  d_norm_.f32(), t, c.hidden, false);
  for (int l = static_cast<int>(c.layers) - 1; l >= 0; --l) {
    // A checkpointed layer recomputes its activations from its saved input (bitwise the same
    // as in Forward: every kernel is deterministic). Its output lands in resid_[l + 1], which
    // backward no longer needs.
    if (options_.checkpoint_layers[l]) LayerForward(l, acts_[l], resid_[l], resid_[l + 1]);
    LayerBackward(l, acts_[l], resid_[l]);
    if (options_.on_layer_grads_ready) options_.on_layer_grads_ready(l);
  }
  EmbeddingBackward(tokens_.i32(), t, d_resid_.f32(), c.hidden, d_embed_.f32());
  if (options_.on_layer_grads_ready) options_.on_layer_grads_ready(-1);
}

}  // namespace seqmesh
