#include "runtime/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

namespace seqmesh {

void ModelConfig::Validate() const {
  SM_CHECK(vocab >= 1) << "model.vocab must be >= 1, got " << vocab;
  SM_CHECK(hidden >= 1) << "model.hidden must be >= 1, got " << hidden;
  SM_CHECK(layers >= 1) << "model.layers must be >= 1, got " << layers;
  SM_CHECK(heads >= 1) << "model.heads must be >= 1, got " << heads;
  SM_CHECK(kv_heads >= 1) << "model.kv_heads must be >= 1, got " << kv_heads;
  SM_CHECK(ffn >= 1) << "model.ffn must be >= 1, got " << ffn;
  // Bounds that keep every tensor's element count and the parameter count in 64 bits (and a
  // layer's matrices within what one arena can address).
  constexpr int64_t kMaxDim = int64_t{1} << 20, kMaxLayers = 4096, kMaxVocab = int64_t{1} << 24;
  SM_CHECK(vocab <= kMaxVocab) << "model.vocab must be at most 2^24, got " << vocab;
  SM_CHECK(hidden <= kMaxDim && ffn <= kMaxDim)
      << "model.hidden and model.ffn must be at most 2^20, got " << hidden << " and " << ffn;
  SM_CHECK(layers <= kMaxLayers) << "model.layers must be at most " << kMaxLayers << ", got "
                                 << layers;
  SM_CHECK(hidden % heads == 0) << "model.heads (" << heads << ") must divide model.hidden ("
                                << hidden << ")";
  SM_CHECK(heads % kv_heads == 0) << "model.kv_heads (" << kv_heads << ") must divide model.heads ("
                                  << heads << ")";
  SM_CHECK(head_dim() % 2 == 0) << "head_dim = hidden / heads = " << head_dim()
                                << " must be even for rotary embeddings";
  SM_CHECK(rope_theta > 0) << "model.rope_theta must be > 0, got " << rope_theta;
  rope_scaling.Validate();
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

void Model::BuildParams(Arena& arena, std::vector<Tensor>& list, const std::string& prefix) {
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim(), qw = c.heads * hd, kw = c.kv_heads * hd;
  // The groups of params() as they are added (ParamLayout).
  ParamLayout layout;
  auto end_group = [&](int64_t layer) {
    const size_t first = layout.groups.empty() ? 0 : layout.groups.back().last;
    layout.groups.push_back({first, arena.tensors().size(), layer});
  };
  arena.Add(prefix + "model.embed_tokens.weight", DType::kF32, {c.vocab, c.hidden});
  end_group(-1);
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = prefix + "model.layers." + std::to_string(l) + ".";
    arena.Add(p + "input_layernorm.weight", DType::kF32, {c.hidden});
    arena.Add(p + "self_attn.q_proj.weight", DType::kF32, {qw, c.hidden});
    arena.Add(p + "self_attn.k_proj.weight", DType::kF32, {kw, c.hidden}, /*packed=*/true);
    arena.Add(p + "self_attn.v_proj.weight", DType::kF32, {kw, c.hidden}, /*packed=*/true);
    arena.Add(p + "self_attn.o_proj.weight", DType::kF32, {c.hidden, qw});
    arena.Add(p + "post_attention_layernorm.weight", DType::kF32, {c.hidden});
    arena.Add(p + "mlp.gate_proj.weight", DType::kF32, {c.ffn, c.hidden});
    arena.Add(p + "mlp.up_proj.weight", DType::kF32, {c.ffn, c.hidden}, /*packed=*/true);
    arena.Add(p + "mlp.down_proj.weight", DType::kF32, {c.hidden, c.ffn});
    end_group(l);
  }
  arena.Add(prefix + "model.norm.weight", DType::kF32, {c.hidden});
  if (!c.tie_embeddings) arena.Add(prefix + "lm_head.weight", DType::kF32, {c.vocab, c.hidden});
  end_group(-1);
  arena.Allocate();
  // Backward finishes layers last to first, then reports -1: the embedding, then the rest.
  for (int64_t l = c.layers; l >= 1; --l) layout.finish_order.push_back(static_cast<int>(l));
  layout.finish_order.push_back(0);
  layout.finish_order.push_back(static_cast<int>(c.layers + 1));
  layout_ = std::move(layout);
  for (const Tensor& t : arena.tensors()) list.push_back(t);
}

void Model::BuildAdapters() {
  const ModelConfig& c = config_;
  const LoraConfig& lc = options_.lora;
  const int64_t r = lc.rank, hd = c.head_dim(), qw = c.heads * hd, kw = c.kv_heads * hd;
  // Per projection of LoraModules(): input and output width, first output column in the fused
  // rows it writes (q|k|v and gate|up), and its module path.
  struct Geometry {
    int64_t in, out, col;
    const char* path;
  };
  const Geometry geometry[] = {
      {c.hidden, qw, 0, "self_attn.q_proj"},       {c.hidden, kw, qw, "self_attn.k_proj"},
      {c.hidden, kw, qw + kw, "self_attn.v_proj"}, {qw, c.hidden, 0, "self_attn.o_proj"},
      {c.hidden, c.ffn, 0, "mlp.gate_proj"},       {c.hidden, c.ffn, c.ffn, "mlp.up_proj"},
      {c.ffn, c.hidden, 0, "mlp.down_proj"}};
  const std::vector<std::string>& modules = LoraModules();
  std::vector<bool> on(modules.size(), false);
  for (const std::string& t : lc.targets)
    on[std::find(modules.begin(), modules.end(), t) - modules.begin()] = true;
  // One group per layer (gradient sync's buckets): lora_A, lora_B of each target in order.
  for (int64_t l = 0; l < c.layers; ++l) {
    const size_t first = adapter_arena_.tensors().size();
    for (size_t m = 0; m < modules.size(); ++m) {
      if (!on[m]) continue;
      const Geometry& g = geometry[m];
      const std::string name = "model.layers." + std::to_string(l) + "." + g.path;
      for (Arena* arena : {&adapter_arena_, &grad_arena_}) {
        const std::string prefix = arena == &grad_arena_ ? "grad." : "";
        arena->Add(prefix + name + ".lora_A.weight", DType::kF32, {r, g.in});
        arena->Add(prefix + name + ".lora_B.weight", DType::kF32, {g.out, r});
      }
    }
    adapter_layout_.groups.push_back({first, adapter_arena_.tensors().size(), l});
  }
  for (int64_t l = c.layers - 1; l >= 0; --l)
    adapter_layout_.finish_order.push_back(static_cast<int>(l));
  adapter_arena_.Allocate();
  grad_arena_.Allocate();
  adapters_.assign(adapter_arena_.tensors().begin(), adapter_arena_.tensors().end());
  grads_.assign(grad_arena_.tensors().begin(), grad_arena_.tensors().end());
  lora_scale_ = static_cast<float>(lc.scaling());
  // A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT: kaiming_uniform_ with a = sqrt(5)), B = 0, so the
  // adapted model starts as the base model exactly.
  uint64_t state = options_.lora_seed ^ 0x4c6f5241ull;
  auto uniform = [&state]() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (static_cast<double>(z >> 11) + 0.5) * 0x1.0p-53;
  };
  size_t k = 0;
  layer_adapters_.assign(c.layers, std::vector<std::optional<Adapter>>(modules.size()));
  for (int64_t l = 0; l < c.layers; ++l) {
    for (size_t m = 0; m < modules.size(); ++m) {
      if (!on[m]) continue;
      Adapter a{adapters_[k],  adapters_[k + 1], grads_[k],
                grads_[k + 1], geometry[m].col,  static_cast<int>(m)};
      k += 2;
      const double bound = 1.0 / std::sqrt(static_cast<double>(geometry[m].in));
      float* d = a.a.f32();
      for (int64_t i = 0; i < a.a.numel(); ++i)
        d[i] = static_cast<float>((2.0 * uniform() - 1.0) * bound);
      layer_adapters_[l][m] = a;
    }
  }
}

Model::LayerParams Model::ComputeWeights(const LayerParams& w) {
  if (!bf16_) return w;
  Backend& be = *options_.backend;
  be.Copy(w16_.qkv, w.qkv);
  be.Copy(w16_.o, w.o);
  be.Copy(w16_.gate_up, w.gate_up);
  be.Copy(w16_.down, w.down);
  return {w.in_norm, w16_.qkv, w16_.o, w.post_norm, w16_.gate_up, w16_.down};
}

Tensor Model::AdapterInput(const Tensor& x, int64_t in) {
  if (x.dtype() == DType::kF32) return x;
  const Tensor wide = Scratch(lora_x_, in);
  options_.backend->Copy(wide, x);
  return wide;
}

Tensor Model::Scratch(const Tensor& buffer, int64_t cols) const {
  return Tensor(buffer.name(), DType::kF32, {num_tokens_, cols}, buffer.data(), buffer.device());
}

uint64_t Model::DropoutKey(int64_t layer, int module) const {
  uint64_t z = dropout_key_ ^ (options_.lora_seed * 0xd1b54a32d192ed03ull) ^
               (static_cast<uint64_t>(layer * 8 + module + 1) * 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void Model::AdapterForward(const Adapter& m, int64_t layer, const Tensor& x, const Tensor& y) {
  Backend& be = *options_.backend;
  const int64_t in = m.a.dim(1), out = m.b.dim(0), r = m.a.dim(0);
  const float p = static_cast<float>(options_.lora.dropout);
  const Tensor x32 = AdapterInput(x, in);
  Tensor xin = x32;
  if (dropout_key_ != 0 && p > 0) {
    xin = Scratch(lora_x_, in);
    be.Dropout(x32, xin, p, DropoutKey(layer, m.module));
  }
  const Tensor u = Scratch(lora_u_, r), d = Scratch(lora_d_, out);
  be.LinearForward(xin, m.a, u, false);
  be.LinearForward(u, m.b, d, false);
  be.AddRows({y.f32() + m.col, y.dim(1)}, {d.f32(), out}, num_tokens_, out, lora_scale_);
}

void Model::AdapterBackward(const Adapter& m, int64_t layer, const Tensor& x, const Tensor& dy,
                            const Tensor& dx) {
  Backend& be = *options_.backend;
  const int64_t in = m.a.dim(1), out = m.b.dim(0), r = m.a.dim(0);
  const float p = static_cast<float>(options_.lora.dropout);
  const bool drop = dropout_key_ != 0 && p > 0;
  const Tensor x32 = AdapterInput(x, in);
  Tensor xin = x32;
  if (drop) {
    xin = Scratch(lora_x_, in);
    be.Dropout(x32, xin, p, DropoutKey(layer, m.module));
  }
  // u = dropout(x) A^T again (cheaper than keeping it); g = s dy of this projection's columns.
  const Tensor u = Scratch(lora_u_, r), g = Scratch(lora_d_, out), du = Scratch(lora_du_, r);
  be.LinearForward(xin, m.a, u, false);
  be.Zero(g);
  be.AddRows({g.f32(), out}, {dy.f32() + m.col, dy.dim(1)}, num_tokens_, out, lora_scale_);
  be.LinearBackwardWeight(g, u, m.db);        // dB += g^T u
  be.LinearBackwardInput(g, m.b, du, false);  // du = g B
  be.LinearBackwardWeight(du, xin, m.da);     // dA += du^T dropout(x)
  if (drop) {
    const Tensor t = Scratch(lora_x_, in);  // dropout(x) is no longer needed
    be.LinearBackwardInput(du, m.a, t, false);
    be.Dropout(t, t, p, DropoutKey(layer, m.module));  // the same mask, the same 1 / (1 - p)
    be.Add(dx.f32(), t.f32(), num_tokens_ * in);
  } else {
    be.LinearBackwardInput(du, m.a, dx, true);
  }
}

void Model::AdaptersForward(int64_t layer, int first, int last, const Tensor& x, const Tensor& y) {
  if (!lora_) return;
  for (int m = first; m < last; ++m)
    if (const auto& a = layer_adapters_[layer][m]) AdapterForward(*a, layer, x, y);
}

void Model::AdaptersBackward(int64_t layer, int first, int last, const Tensor& x, const Tensor& dy,
                             const Tensor& dx) {
  if (!lora_) return;
  for (int m = first; m < last; ++m)
    if (const auto& a = layer_adapters_[layer][m]) AdapterBackward(*a, layer, x, dy, dx);
}

Model::LayerParams Model::LayerView(std::span<const Tensor> g, int layer) const {
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim(), qw = c.heads * hd, kw = c.kv_heads * hd;
  SM_CHECK(g.size() == 9) << "layer " << layer << ": a parameter group of " << g.size()
                          << " tensors, expected 9";
  // in_norm, q, k, v, o, post_norm, gate, up, down; q|k|v and gate|up adjacent in memory.
  SM_CHECK(g[2].f32() == g[1].f32() + g[1].numel() && g[3].f32() == g[2].f32() + g[2].numel() &&
           g[7].f32() == g[6].f32() + g[6].numel())
      << "layer " << layer << ": the parameter store returned '" << g[1].name() << "', '"
      << g[2].name() << "', '" << g[3].name() << "' (or gate and up) apart in memory; they "
      << "must be adjacent as in the model's arena";
  const std::string prefix = g[1].name().substr(0, g[1].name().find("model."));
  LayerParams lp;
  lp.in_norm = g[0];
  lp.qkv = Tensor(prefix + "layer" + std::to_string(layer) + ".qkv", DType::kF32,
                  {qw + 2 * kw, c.hidden}, g[1].data(), g[1].device());
  lp.o = g[4];
  lp.post_norm = g[5];
  lp.gate_up = Tensor(prefix + "layer" + std::to_string(layer) + ".gate_up", DType::kF32,
                      {2 * c.ffn, c.hidden}, g[6].data(), g[6].device());
  lp.down = g[8];
  return lp;
}

Model::HeadParams Model::HeadView(std::span<const Tensor> head,
                                  std::span<const Tensor> embed) const {
  SM_CHECK(head.size() == (config_.tie_embeddings ? 1u : 2u) && embed.size() == 1)
      << "the final norm and lm_head group has " << head.size() << " tensors";
  return {head[0], config_.tie_embeddings ? embed[0] : head[1]};
}

namespace {
size_t Aligned(size_t bytes) { return (bytes + 63) / 64 * 64; }
}  // namespace

size_t Model::LayerActivationBytes(const ModelConfig& c, int64_t tokens, Precision precision) {
  // The tensors of AddLayerActs, in its order.
  const size_t t = static_cast<size_t>(tokens), in = precision == Precision::kBf16 ? 2 : 4;
  const size_t hidden = static_cast<size_t>(c.hidden), ffn = static_cast<size_t>(c.ffn);
  const size_t q = static_cast<size_t>(c.heads * c.head_dim());
  const size_t qkv = static_cast<size_t>((c.heads + 2 * c.kv_heads) * c.head_dim());
  const size_t heads = static_cast<size_t>(c.heads);
  return Aligned(t * hidden * in) + Aligned(t * 4) + Aligned(t * qkv * 4) + Aligned(t * q * in) +
         Aligned(heads * t * 4) + Aligned(t * hidden * 4) + Aligned(t * hidden * in) +
         Aligned(t * 4) + Aligned(t * 2 * ffn * 4) + Aligned(t * ffn * in);
}

size_t Model::ResidualSlotBytes(const ModelConfig& c, int64_t tokens) {
  return Aligned(static_cast<size_t>(tokens) * static_cast<size_t>(c.hidden) * 4);
}

int64_t Model::OffloadedLayersFor(double ratio, int64_t layers) {
  SM_CHECK(ratio >= 0 && ratio <= 1) << "offload ratio " << ratio << " is outside [0, 1]";
  if (ratio == 0 || layers < 3) return 0;
  const double middle = ratio * static_cast<double>(layers - 2);
  const int64_t k = std::llround(middle);
  SM_CHECK(std::abs(middle - static_cast<double>(k)) < 1e-6 && k >= 1)
      << "offload ratio " << ratio << " is not a multiple of 1/" << layers - 2 << " (layers 2.."
      << layers - 1 << " of " << layers << " leave whole)";
  return k + 1;
}

size_t Model::PassActivationBytes(const ModelConfig& c, int64_t tokens, int64_t offloaded,
                                  Precision precision) {
  SM_CHECK(offloaded >= 0 && offloaded < std::max<int64_t>(c.layers, 1))
      << offloaded << " offloaded layers of " << c.layers << " (the last layer stays)";
  const size_t layer = LayerActivationBytes(c, tokens, precision);
  const size_t slot = ResidualSlotBytes(c, tokens);
  const size_t kept = static_cast<size_t>(c.layers - offloaded);
  size_t bytes = kept * (layer + slot) + slot;  // + the final norm's input
  if (offloaded > 0) bytes += layer + 2 * slot;
  return bytes;
}

int64_t Model::HeadChunkTokens(const ModelConfig& c, int64_t max_tokens, int64_t chunk_tokens) {
  SM_CHECK(chunk_tokens >= 0) << "head_chunk_tokens must be >= 0, got " << chunk_tokens;
  constexpr int64_t kHeadChunkBytes = int64_t{64} << 20;
  const int64_t chunk =
      chunk_tokens > 0
          ? chunk_tokens
          : std::max<int64_t>(1, kHeadChunkBytes / (4 * std::max<int64_t>(1, c.vocab)));
  return std::min(chunk, max_tokens);
}

int64_t Model::PassTokens(int64_t capacity) {
  SM_CHECK(capacity >= 1) << "micro-batch capacity must be >= 1 token, got " << capacity;
  return 2 * ((capacity + 1) / 2);
}

int64_t Model::OffloadPassTokens(int64_t capacity, int64_t layers, int64_t offloaded) {
  SM_CHECK(offloaded >= 0 && offloaded < std::max<int64_t>(layers, 1))
      << offloaded << " offloaded layers of " << layers;
  if (offloaded == 0) return PassTokens(capacity);
  // Resident tokens t (l - k + 1) / l <= C (the validator's Eq. 3 check, whole layers).
  return capacity * layers / (layers - offloaded + 1);
}

int64_t Model::OffloadMaxPassTokens(int64_t capacity, int64_t layers) {
  int64_t most = 0;
  for (int64_t k = 0; k < std::max<int64_t>(layers, 1); ++k)
    most = std::max(most, OffloadPassTokens(capacity, layers, k));
  return most;
}

size_t Model::OffloadPassPoolBytes(const ModelConfig& config, int64_t capacity,
                                   Precision precision) {
  size_t most = 0;
  for (int64_t k = 0; k < std::max<int64_t>(config.layers, 1); ++k)
    most = std::max(most, PassActivationBytes(config, OffloadPassTokens(capacity, config.layers, k),
                                              k, precision));
  return most;
}

Model::LayerActs Model::AddLayerActs(const std::string& p, int64_t t, const ActAdd& add_t) const {
  const ModelConfig& c = config_;
  LayerActs a;
  auto add = [&](const char* name, Shape s) { return add_t(p + name, DType::kF32, s); };
  // The inputs of matrix multiplications are kept in the compute dtype.
  const DType gemm_in = bf16_ ? DType::kBF16 : DType::kF32;
  auto add_in = [&](const char* name, Shape s) { return add_t(p + name, gemm_in, s); };
  a.xn1 = add_in("xn1", {t, c.hidden});
  a.rstd1 = add("rstd1", {t});
  a.qkv = add("qkv", {t, qkv_width()});
  a.attn = add_in("attn", {t, c.heads * c.head_dim()});
  a.lse = add("lse", {c.heads, t});
  a.x2 = add("x2", {t, c.hidden});
  a.xn2 = add_in("xn2", {t, c.hidden});
  a.rstd2 = add("rstd2", {t});
  a.gate_up = add("gate_up", {t, 2 * c.ffn});
  a.h = add_in("h", {t, c.ffn});
  return a;
}

std::vector<Tensor> Model::AddResidualSlots(int64_t t, const ActAdd& add) const {
  // Residual-stream slot l holds layer l's input (slot layers: the final norm's). The input of a
  // layer whose saved input is offloaded is dead from its Save to its Fetch (which returns the
  // store's copy), so those slots share two buffers, by parity: layer l reads slot l while it
  // writes slot l + 1, and in backward a recompute writes only slots whose contents are dead.
  const ModelConfig& c = config_;
  std::vector<Tensor> resid;
  Tensor shared[2];
  for (int l = 0; l <= c.layers; ++l) {
    if (l < c.layers && options_.offload_layers[l]) {
      Tensor& slot = shared[l % 2];
      if (slot.name().empty())
        slot = add("resid.offloaded" + std::to_string(l % 2), DType::kF32, {t, c.hidden});
      resid.push_back(slot);
    } else {
      resid.push_back(add("resid" + std::to_string(l), DType::kF32, {t, c.hidden}));
    }
  }
  return resid;
}

Model::Model(const ModelConfig& config, const ModelOptions& options)
    : config_(config), options_(options) {
  config_.Validate();
  SM_CHECK(options_.max_tokens >= 1)
      << "model max_tokens must be >= 1, got " << options_.max_tokens;
  SM_CHECK(options_.pass_pool_bytes == 0 || (options_.checkpoint_layers.empty() &&
                                             options_.offload_layers.empty() && options_.gradients))
      << "a model with a pass pool (ModelOptions::pass_pool_bytes) lays out its layers per pass: "
         "checkpoint_layers and offload_layers must be empty, and it needs gradients";
  if (options_.checkpoint_layers.empty()) options_.checkpoint_layers.assign(config_.layers, false);
  SM_CHECK(static_cast<int64_t>(options_.checkpoint_layers.size()) == config_.layers)
      << "checkpoint_layers has " << options_.checkpoint_layers.size() << " entries for "
      << config_.layers << " layers";
  if (options_.offload_layers.empty()) options_.offload_layers.assign(config_.layers, false);
  SM_CHECK(static_cast<int64_t>(options_.offload_layers.size()) == config_.layers)
      << "offload_layers has " << options_.offload_layers.size() << " entries for "
      << config_.layers << " layers";
  for (int l = 0; l < config_.layers; ++l) {
    SM_CHECK(!options_.offload_layers[l] || options_.checkpoint_layers[l])
        << "layer " << l << " offloads its saved input but is not checkpointed; offload applies "
        << "to checkpointed layers only (checkpoint_layers)";
  }
  if (!options_.backend) options_.backend = MakeBackend(Device::kCpu, {});
  // The arenas are host memory: the backend must compute there (raw-pointer entry points, such
  // as attention, rely on this one check).
  SM_CHECK(options_.backend->device() == Device::kCpu)
      << "the model's arenas are in host memory but its backend runs on "
      << DeviceName(options_.backend->device());
  dims_ = {static_cast<int>(config_.heads), static_cast<int>(config_.kv_heads),
           static_cast<int>(config_.head_dim())};
  rope_inv_freq_ = RopeInverseFrequencies(static_cast<int>(config_.head_dim()), config_.rope_theta,
                                          config_.rope_scaling);

  BuildParams(param_arena_, params_, "");
  for (Tensor& p : params_) {
    if (p.shape().ndim() == 1) std::fill(p.f32(), p.f32() + p.numel(), 1.0f);
  }
  lora_ = options_.lora.rank > 0;
  if (lora_) {
    ValidateLoraTraining(options_.lora);
    SM_CHECK(options_.gradients) << "a LoRA model needs gradients (ModelOptions::gradients)";
    BuildAdapters();
  } else if (options_.gradients) {
    BuildParams(grad_arena_, grads_, "grad.");
    for (int l = 0; l < config_.layers; ++l) {
      const ParamLayout::Group& g = layout_.groups[l + 1];
      dw_.push_back(
          LayerView(std::span<const Tensor>(grads_).subspan(g.first, g.last - g.first), l));
    }
    d_embed_ = grads_[layout_.groups[0].first];
    d_norm_ = grads_[layout_.groups[head_group()].first];
    d_lm_head_ = config_.tie_embeddings ? d_embed_ : grads_[layout_.groups[head_group()].first + 1];
  }
  bf16_ = options_.precision == Precision::kBf16;
  if (bf16_) {
    const ModelConfig& c = config_;
    const int64_t qw = c.heads * c.head_dim();
    auto add = [&](const char* name, Shape s) { return bf16_arena_.Add(name, DType::kBF16, s); };
    std::vector<std::pair<Tensor*, Tensor*>> named = {
        {&w16_.qkv, add("qkv.bf16", {qkv_width(), c.hidden})},
        {&w16_.o, add("o.bf16", {c.hidden, qw})},
        {&w16_.gate_up, add("gate_up.bf16", {2 * c.ffn, c.hidden})},
        {&w16_.down, add("down.bf16", {c.hidden, c.ffn})},
        {&lm_head16_, add("lm_head.bf16", {c.vocab, c.hidden})}};
    bf16_arena_.Allocate();
    for (auto& [member, planned] : named) *member = *planned;
  }
  own_param_store_ = std::make_unique<InMemoryParameterStore>(params_, layout_);
  own_act_store_ = std::make_unique<InMemoryActivationStore>(config_.layers);
  param_store_ = own_param_store_.get();
  act_store_ = own_act_store_.get();
  PlanActivations();
}

void Model::UseParameterStore(ParameterStore* store) {
  param_store_ = store ? store : own_param_store_.get();
}

void Model::UseActivationStore(ActivationStore* store) {
  act_store_ = store ? store : own_act_store_.get();
}

// Activations: plan every buffer from max_tokens, then one allocation.
void Model::PlanActivations() {
  const ModelConfig& c = config_;
  const int64_t t = options_.max_tokens, hd = c.head_dim();
  head_chunk_ = HeadChunkTokens(c, t, options_.head_chunk_tokens);
  const ActAdd plan = [&](const std::string& name, DType dtype, Shape shape) {
    return *act_arena_.Add(name, dtype, shape);
  };
  // Layers that keep their activations get their own; checkpointed layers share one set, and so
  // do all layers of a model without gradients (nothing is kept for a backward). With a pass
  // pool, CarvePass lays these out per pass instead.
  auto shared = [&](int l) { return options_.checkpoint_layers[l] || !options_.gradients; };
  bool any_checkpoint = false;
  std::vector<Tensor> resid;
  std::vector<LayerActs> owned;
  LayerActs recompute;
  if (options_.pass_pool_bytes == 0) {
    resid = AddResidualSlots(t, plan);
    for (int l = 0; l < c.layers; ++l) {
      if (shared(l))
        any_checkpoint = true;
      else
        owned.push_back(AddLayerActs("layer" + std::to_string(l) + ".", t, plan));
    }
    if (any_checkpoint) recompute = AddLayerActs("recompute.", t, plan);
  } else {
    const int64_t words = static_cast<int64_t>((options_.pass_pool_bytes + 3) / 4);
    resid.push_back(plan("pass_pool", DType::kF32, {words}));
  }
  auto add = [&](const char* name, Shape s) { return act_arena_.Add(name, DType::kF32, s); };
  std::vector<std::pair<Tensor*, Tensor*>> named = {
      // The lm_head's input, in the compute dtype (rstdf_ and the logits stay f32).
      {&xf_, act_arena_.Add("xf", bf16_ ? DType::kBF16 : DType::kF32, {t, c.hidden})},
      {&rstdf_, add("rstdf", {t})},
      {&logits_, add("logits", {head_chunk_, c.vocab})},
      {&rope_cos_, add("rope_cos", {t, hd / 2})},
      {&rope_sin_, add("rope_sin", {t, hd / 2})},
      {&positions_, act_arena_.Add("positions", DType::kI32, {t})},
      {&tokens_, act_arena_.Add("tokens", DType::kI32, {t})},
      {&targets_, act_arena_.Add("targets", DType::kI32, {t})}};
  if (options_.gradients) {
    named.insert(named.end(), {{&d_resid_, add("d_resid", {t, c.hidden})},
                               {&d_xn_, add("d_xn", {t, c.hidden})},
                               {&d_attn_, add("d_attn", {t, c.heads * hd})},
                               {&d_qkv_, add("d_qkv", {t, qkv_width()})},
                               {&d_h_, add("d_h", {t, c.ffn})},
                               {&d_gate_up_, add("d_gate_up", {t, 2 * c.ffn})}});
  }
  if (bf16_) {
    named.insert(named.end(), {{&f32_out_, add("f32_out", {t, std::max(c.hidden, c.ffn)})},
                               {&attn_f32_, add("attn_f32", {t, c.heads * hd})}});
  }
  if (lora_) {
    // Scratch for one adapter at a time: u = x A^T (T, r), its gradient, B's product or the
    // output gradient (T, widest output), the dropped input or its gradient (T, widest input).
    const int64_t r = options_.lora.rank, widest = std::max({c.hidden, c.heads * hd, c.ffn});
    named.insert(named.end(), {{&lora_u_, add("lora_u", {t, r})},
                               {&lora_du_, add("lora_du", {t, r})},
                               {&lora_d_, add("lora_d", {t, widest})},
                               {&lora_x_, add("lora_x", {t, widest})},
                               {&frozen_dnorm_, add("frozen_dnorm", {c.hidden})}});
  }
  act_arena_.Allocate();

  // Arena::Add's tensors get their memory in Allocate: resolve the placeholders by name.
  auto resolve = [&](Tensor& x) { x = act_arena_.Find(x.name()); };
  if (options_.pass_pool_bytes > 0) {
    pass_pool_ = act_arena_.Find("pass_pool");
  } else {
    for (Tensor& r : resid) resolve(r);
    resid_ = std::move(resid);
    auto resolve_acts = [&](LayerActs& a) {
      for (Tensor* x :
           {&a.xn1, &a.rstd1, &a.qkv, &a.attn, &a.lse, &a.x2, &a.xn2, &a.rstd2, &a.gate_up, &a.h})
        resolve(*x);
    };
    for (LayerActs& a : owned) resolve_acts(a);
    if (any_checkpoint) resolve_acts(recompute);
    recompute_ = recompute;
    size_t k = 0;
    for (int l = 0; l < c.layers; ++l) acts_.push_back(shared(l) ? recompute_ : owned[k++]);
  }
  for (auto& [member, planned] : named) *member = *planned;
}

void Model::CarvePass(int64_t tokens, int64_t offloaded) {
  const ModelConfig& c = config_;
  const size_t need = PassActivationBytes(c, tokens, offloaded, options_.precision);
  SM_CHECK(need <= options_.pass_pool_bytes)
      << "a pass of " << tokens << " tokens with " << offloaded << " layers offloaded needs "
      << need << " bytes of activations but the model's pass pool holds "
      << options_.pass_pool_bytes << " (ModelOptions::pass_pool_bytes: size it for the plan's "
      << "largest micro-batch at its offload ratio)";
  for (int l = 0; l < c.layers; ++l) {
    options_.checkpoint_layers[l] = l < offloaded;
    options_.offload_layers[l] = l < offloaded;
  }
  auto* base = static_cast<std::byte*>(pass_pool_.data());
  size_t used = 0;
  const ActAdd carve = [&](const std::string& name, DType dtype, Shape shape) {
    Tensor x(name, dtype, shape, base + used);
    used += Aligned(x.bytes());
    return x;
  };
  resid_ = AddResidualSlots(tokens, carve);
  acts_.clear();
  for (int l = 0; l < c.layers; ++l) {
    if (l >= offloaded)
      acts_.push_back(AddLayerActs("layer" + std::to_string(l) + ".", tokens, carve));
  }
  if (offloaded > 0) {
    recompute_ = AddLayerActs("recompute.", tokens, carve);
    acts_.insert(acts_.begin(), static_cast<size_t>(offloaded), recompute_);
  }
  SM_CHECK(used == need) << "pass pool carve: " << used << " bytes laid out, " << need
                         << " expected (PassActivationBytes and CarvePass disagree)";
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
  for (size_t t = 0; t < params_.size(); ++t) {
    const Tensor& p = params_[t];
    if (param_access_) param_access_.before(t, /*overwrite=*/true);
    float* d = p.f32();
    if (p.shape().ndim() == 1) {
      std::fill(d, d + p.numel(), 1.0f);
    } else {
      for (int64_t i = 0; i < p.numel(); ++i) {
        const double r = std::sqrt(-2.0 * std::log(uniform()));
        d[i] = static_cast<float>(std * r * std::cos(2.0 * std::numbers::pi * uniform()));
      }
    }
    if (param_access_) param_access_.after(t, /*changed=*/true);
  }
}

void Model::ZeroGrad() {
  if (grad_arena_.allocated()) std::memset(grad_arena_.base(), 0, grad_arena_.bytes());
}

Tensor Model::Live(const Tensor& t) const { return t.Rows(0, num_tokens_); }

void Model::LayerForward(const LayerParams& w, const LayerActs& a, const Tensor& x,
                         const Tensor& out, KvCache* cache, int64_t layer) {
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim(), qw = c.heads * hd, kw = c.kv_heads * hd;
  const int64_t ld = qkv_width();
  Backend& be = *options_.backend;
  const Tensor cos = Live(rope_cos_), sin = Live(rope_sin_), qkv_t = Live(a.qkv);
  // bf16: a norm's, attention's and SwiGLU's outputs are computed in f32 and stored rounded.
  auto stored = [&](const Tensor& act, int64_t cols) {
    return bf16_ ? Scratch(f32_out_, cols) : act;
  };
  auto store = [&](const Tensor& act, const Tensor& out32) {
    if (bf16_) be.Copy(act, out32);
  };
  const Tensor xn1 = stored(Live(a.xn1), c.hidden);
  be.RmsNormForward(x, w.in_norm, xn1, Live(a.rstd1), c.norm_eps);
  store(Live(a.xn1), xn1);
  be.LinearForward(Live(a.xn1), w.qkv, qkv_t, false);
  AdaptersForward(layer, 0, 3, Live(a.xn1), qkv_t);  // q, k, v: before RoPE, as in PEFT
  be.RopeApply(qkv_t, 0, static_cast<int>(c.heads), static_cast<int>(hd), cos, sin, false);
  be.RopeApply(qkv_t, qw, static_cast<int>(c.kv_heads), static_cast<int>(hd), cos, sin, false);
  float* qkv = a.qkv.f32();
  float* attn = bf16_ ? attn_f32_.f32() : a.attn.f32();
  AttentionIo io{{qkv, ld},  {qkv + qw, ld}, {qkv + qw + kw, ld},
                 {attn, qw}, a.lse.f32(),    a.lse.dim(1)};
  if (cache) {
    // Rows [length, length + T) of the cache become this call's keys and values; the segment
    // (Decode) lets query row i see cache rows [0, length + i].
    float* k = cache->k(layer).f32() + cache->length() * kw;
    float* v = cache->v(layer).f32() + cache->length() * kw;
    be.CopyRows({k, kw}, io.k, num_tokens_, kw);
    be.CopyRows({v, kw}, io.v, num_tokens_, kw);
    io.k = {cache->k(layer).f32(), kw};
    io.v = {cache->v(layer).f32(), kw};
  }
  be.AttentionForward(dims_, segments_, io, 1.0f / std::sqrt(static_cast<float>(hd)));
  if (split_attention_) {
    const int64_t r = split_.q_begin;
    split_attention_->Forward(be, {qkv + r * ld, ld}, {qkv + r * ld + qw, ld},
                              {qkv + r * ld + qw + kw, ld}, {attn + r * qw, qw}, a.lse.f32() + r,
                              a.lse.dim(1));
  }
  store(Live(a.attn), Scratch(attn_f32_, qw));
  // x2 = x + attn Wo^T
  be.Copy(Live(a.x2), x);
  be.LinearForward(Live(a.attn), w.o, Live(a.x2), true);
  AdaptersForward(layer, 3, 4, Live(a.attn), Live(a.x2));
  const Tensor xn2 = stored(Live(a.xn2), c.hidden);
  be.RmsNormForward(Live(a.x2), w.post_norm, xn2, Live(a.rstd2), c.norm_eps);
  store(Live(a.xn2), xn2);
  be.LinearForward(Live(a.xn2), w.gate_up, Live(a.gate_up), false);
  AdaptersForward(layer, 4, 6, Live(a.xn2), Live(a.gate_up));
  const Tensor h = stored(Live(a.h), c.ffn);
  be.SwiGluForward(Live(a.gate_up), h);
  store(Live(a.h), h);
  // out = x2 + h Wd^T
  be.Copy(out, Live(a.x2));
  be.LinearForward(Live(a.h), w.down, out, true);
  AdaptersForward(layer, 6, 7, Live(a.h), out);
}

// On entry d_resid_ holds d loss / d out; on exit d loss / d x.
void Model::LayerBackward(const LayerParams& w, int l, const LayerActs& a, const Tensor& x) {
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim(), qw = c.heads * hd, kw = c.kv_heads * hd;
  const int64_t ld = qkv_width();
  // With LoRA the base weights are frozen: no weight gradients (the norms' go to scratch).
  const LayerParams* dw = lora_ ? nullptr : &dw_[l];
  const Tensor& d_in_norm = dw ? dw->in_norm : frozen_dnorm_;
  const Tensor& d_post_norm = dw ? dw->post_norm : frozen_dnorm_;
  Backend& be = *options_.backend;
  const Tensor dres = Live(d_resid_);
  auto poll = [&] {
    if (options_.on_backward_progress) options_.on_backward_progress();
  };
  // out = x2 + h Wd^T
  if (dw) be.LinearBackwardWeight(dres, Live(a.h), dw->down);
  be.LinearBackwardInput(dres, w.down, Live(d_h_), false);
  AdaptersBackward(l, 6, 7, Live(a.h), dres, Live(d_h_));
  poll();
  be.SwiGluBackward(Live(a.gate_up), Live(d_h_), Live(d_gate_up_));
  if (dw) be.LinearBackwardWeight(Live(d_gate_up_), Live(a.xn2), dw->gate_up);
  be.LinearBackwardInput(Live(d_gate_up_), w.gate_up, Live(d_xn_), false);
  AdaptersBackward(l, 4, 6, Live(a.xn2), Live(d_gate_up_), Live(d_xn_));
  poll();
  // dres becomes d x2: the residual path plus the norm's input gradient.
  be.RmsNormBackward(Live(d_xn_), Live(a.x2), w.post_norm, Live(a.rstd2), dres, d_post_norm, true);
  // x2 = x + attn Wo^T
  if (dw) be.LinearBackwardWeight(dres, Live(a.attn), dw->o);
  be.LinearBackwardInput(dres, w.o, Live(d_attn_), false);
  AdaptersBackward(l, 3, 4, Live(a.attn), dres, Live(d_attn_));
  poll();
  be.Zero(Live(d_qkv_));
  float* qkv = a.qkv.f32();
  float* dqkv = d_qkv_.f32();
  // bf16: attention's backward takes its output widened back to f32 (as stored: rounded).
  if (bf16_) be.Copy(Scratch(attn_f32_, qw), Live(a.attn));
  float* attn = bf16_ ? attn_f32_.f32() : a.attn.f32();
  AttentionIo io{{qkv, ld},  {qkv + qw, ld}, {qkv + qw + kw, ld},
                 {attn, qw}, a.lse.f32(),    a.lse.dim(1)};
  be.AttentionBackward(dims_, segments_, io, {d_attn_.f32(), qw}, {dqkv, ld}, {dqkv + qw, ld},
                       {dqkv + qw + kw, ld}, 1.0f / std::sqrt(static_cast<float>(hd)));
  poll();
  if (split_attention_) {
    const int64_t r = split_.q_begin;
    split_attention_->Backward(be, {qkv + r * ld, ld}, {qkv + r * ld + qw, ld},
                               {qkv + r * ld + qw + kw, ld}, {attn + r * qw, qw}, a.lse.f32() + r,
                               a.lse.dim(1), {d_attn_.f32() + r * qw, qw}, {dqkv + r * ld, ld},
                               {dqkv + r * ld + qw, ld}, {dqkv + r * ld + qw + kw, ld});
  }
  const Tensor cos = Live(rope_cos_), sin = Live(rope_sin_), dqkv_t = Live(d_qkv_);
  be.RopeApply(dqkv_t, 0, static_cast<int>(c.heads), static_cast<int>(hd), cos, sin, true);
  be.RopeApply(dqkv_t, qw, static_cast<int>(c.kv_heads), static_cast<int>(hd), cos, sin, true);
  if (dw) be.LinearBackwardWeight(dqkv_t, Live(a.xn1), dw->qkv);
  be.LinearBackwardInput(dqkv_t, w.qkv, Live(d_xn_), false);
  AdaptersBackward(l, 0, 3, Live(a.xn1), dqkv_t, Live(d_xn_));
  be.RmsNormBackward(Live(d_xn_), x, w.in_norm, Live(a.rstd1), dres, d_in_norm, true);
}

void Model::PrepareBatch(const Batch& batch, float normalizer) {
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
  if (options_.pass_pool_bytes > 0) {
    CarvePass(batch.num_tokens, batch.offloaded_layers);
  } else {
    SM_CHECK(batch.offloaded_layers == 0)
        << "the micro-batch offloads " << batch.offloaded_layers << " layers (a plan with an "
        << "offload ratio) but the model lays out its activations once: build it with a pass pool "
           "(distributed.offload = true)";
  }
  num_tokens_ = batch.num_tokens;
  dropout_key_ = batch.dropout_key;
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
  FillRopeTables();
}

void Model::FillRopeTables() {
  options_.backend->RopeTable(Live(positions_), rope_inv_freq_, Live(rope_cos_), Live(rope_sin_));
}

Model::HeadParams Model::AcquireHead() {
  std::span<const Tensor> head = param_store_->Acquire(head_group());
  std::span<const Tensor> embed = head.subspan(0, 1);  // unused unless tied
  if (config_.tie_embeddings) embed = param_store_->Acquire(0);
  HeadParams h = HeadView(head, embed);
  if (bf16_) {
    options_.backend->Copy(lm_head16_, h.lm_head);
    h.lm_head = lm_head16_;
  }
  return h;
}

void Model::ReleaseHead() {
  if (config_.tie_embeddings) param_store_->Release(0);
  param_store_->Release(head_group());
}

void Model::HeadNorm(const HeadParams& h, int64_t first) {
  const ModelConfig& c = config_;
  Backend& be = *options_.backend;
  auto rows = [&](const Tensor& t) { return t.Rows(first, num_tokens_); };
  if (bf16_) {
    const Tensor xf32 = Tensor("xf.f32", DType::kF32, {num_tokens_, c.hidden}, f32_out_.data());
    be.RmsNormForward(rows(resid_[c.layers]), h.norm, rows(xf32), rows(rstdf_), c.norm_eps);
    be.Copy(rows(xf_), rows(xf32));
  } else {
    be.RmsNormForward(rows(resid_[c.layers]), h.norm, rows(xf_), rows(rstdf_), c.norm_eps);
  }
}

void Model::HeadLogits(const HeadParams& h, int64_t begin, int64_t end) {
  options_.backend->LinearForward(xf_.Rows(begin, end), h.lm_head, logits_.Rows(0, end - begin),
                                  false);
}

void Model::HeadChunkBackward(const HeadParams& h, int64_t begin, int64_t end) {
  Backend& be = *options_.backend;
  const Tensor dlogits = logits_.Rows(0, end - begin);
  if (!lora_) be.LinearBackwardWeight(dlogits, xf_.Rows(begin, end), d_lm_head_);
  be.LinearBackwardInput(dlogits, h.lm_head, d_xn_.Rows(begin, end), false);
}

float Model::HeadForward(const Batch& batch, float normalizer, float* logits_out) {
  const ModelConfig& c = config_;
  const int64_t t = num_tokens_;
  Backend& be = *options_.backend;
  std::memcpy(targets_.i32(), batch.targets, t * sizeof(int32_t));
  loss_scale_ = 1.0f / normalizer;
  // CrossEntropy leaves d(loss_sum / normalizer) / d logits in logits_. With a backward to
  // follow (Batch::backward_follows), each chunk's lm_head backward runs here, while its
  // gradient is at hand; otherwise, with one chunk, logits_ keeps it for Backward, and with
  // several Backward computes each chunk's again.
  head_done_ = batch.backward_follows && options_.gradients;
  const HeadParams h = AcquireHead();
  HeadNorm(h, 0);
  double loss_sum = 0;
  for (int64_t begin = 0; begin < t; begin += head_chunk_) {
    const int64_t end = std::min(t, begin + head_chunk_);
    HeadLogits(h, begin, end);
    if (logits_out)
      std::memcpy(logits_out + begin * c.vocab, logits_.f32(),
                  (end - begin) * c.vocab * sizeof(float));
    loss_sum +=
        be.CrossEntropy(logits_.Rows(0, end - begin), targets_.Rows(begin, end), loss_scale_);
    if (head_done_) HeadChunkBackward(h, begin, end);
  }
  ReleaseHead();
  return static_cast<float>(loss_sum / normalizer);
}

void Model::ForwardLayers(KvCache* cache) {
  const ModelConfig& c = config_;
  Backend& be = *options_.backend;
  if (!cache && act_store_ == own_act_store_.get()) {
    for (int l = 0; l < c.layers; ++l) {
      SM_CHECK(!options_.offload_layers[l])
          << "layer " << l << " offloads its saved input (ModelOptions::offload_layers) but the "
          << "model has no offloading ActivationStore; call UseActivationStore with one";
    }
  }
  ParameterStore& store = *param_store_;
  be.EmbeddingForward(Live(tokens_), store.Acquire(0)[0], Live(resid_[0]));
  store.Prefetch(1);
  store.Release(0);
  for (int l = 0; l < c.layers; ++l) {
    const LayerParams w = ComputeWeights(LayerView(store.Acquire(l + 1), l));
    store.Prefetch(l + 2);  // the next layer's group, or the head's after the last layer
    LayerForward(w, acts_[l], Live(resid_[l]), Live(resid_[l + 1]), cache, l);
    store.Release(l + 1);
    if (!cache && options_.checkpoint_layers[l]) act_store_->Save(l, Live(resid_[l]));
  }
}

float Model::Forward(const Batch& batch, float normalizer, float* logits_out) {
  PrepareBatch(batch, normalizer);
  ForwardLayers(nullptr);
  const float loss = HeadForward(batch, normalizer, logits_out);
  have_forward_ = true;
  return loss;
}

void Model::Decode(std::span<const int32_t> tokens, KvCache& cache, float* logits_out,
                   bool all_logits) {
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(tokens.size()), past = cache.length();
  SM_CHECK(n >= 1) << "Decode needs at least one token";
  SM_CHECK(n <= options_.max_tokens) << "Decode of " << n << " tokens, more than the model's "
                                     << "capacity max_tokens = " << options_.max_tokens;
  SM_CHECK(cache.layers() == c.layers && cache.width() == c.kv_heads * c.head_dim())
      << "the KV cache was planned for " << cache.layers() << " layers of width " << cache.width()
      << ", the model has " << c.layers << " of width " << c.kv_heads * c.head_dim();
  SM_CHECK(past + n <= cache.capacity())
      << "the KV cache holds " << cache.capacity() << " positions; " << past << " are filled and "
      << n << " more do not fit";
  SM_CHECK(logits_out != nullptr) << "Decode needs somewhere to put the logits";
  have_forward_ = false;  // the activations no longer match a Forward
  num_tokens_ = n;
  dropout_key_ = 0;
  split_attention_ = nullptr;
  // One segment: query row i is position past + i and sees cache rows [0, past + i].
  segments_.assign(1, AttentionSegment{0, n, 0, past + n, past, 0});
  std::memcpy(tokens_.i32(), tokens.data(), n * sizeof(int32_t));
  int32_t* pos = positions_.i32();
  for (int64_t i = 0; i < n; ++i) pos[i] = static_cast<int32_t>(past + i);
  FillRopeTables();
  ForwardLayers(&cache);
  cache.Advance(n);
  const int64_t first = all_logits ? 0 : n - 1;
  const HeadParams h = AcquireHead();
  HeadNorm(h, first);
  for (int64_t begin = first; begin < n; begin += head_chunk_) {
    const int64_t end = std::min(n, begin + head_chunk_);
    HeadLogits(h, begin, end);
    std::memcpy(logits_out + (begin - first) * c.vocab, logits_.f32(),
                (end - begin) * c.vocab * sizeof(float));
  }
  ReleaseHead();
}

void Model::HeadBackward() {
  const ModelConfig& c = config_;
  Backend& be = *options_.backend;
  const HeadParams h = AcquireHead();
  if (c.layers >= 1) param_store_->Prefetch(static_cast<int>(c.layers));
  // logits = xf W_lm^T, chunk by chunk (one chunk: Forward left its gradient in logits_),
  // unless Forward did it.
  const int64_t t = num_tokens_;
  for (int64_t begin = 0; !head_done_ && begin < t; begin += head_chunk_) {
    const int64_t end = std::min(t, begin + head_chunk_);
    if (t > head_chunk_) {
      HeadLogits(h, begin, end);
      be.CrossEntropy(logits_.Rows(0, end - begin), targets_.Rows(begin, end), loss_scale_);
    }
    HeadChunkBackward(h, begin, end);
  }
  be.RmsNormBackward(Live(d_xn_), Live(resid_[c.layers]), h.norm, Live(rstdf_), Live(d_resid_),
                     lora_ ? frozen_dnorm_ : d_norm_, false);
  ReleaseHead();
}

void Model::Backward() {
  SM_CHECK(options_.gradients)
      << "Backward() on a model built for inference (ModelOptions::gradients = false)";
  SM_CHECK(have_forward_)
      << "Backward() needs a Forward() first (each Forward allows one Backward)";
  have_forward_ = false;
  const ModelConfig& c = config_;
  ParameterStore& store = *param_store_;
  // The checkpointed layers below `l`, highest first: the order their inputs come back.
  auto next_checkpointed = [&](int l) {
    for (int k = l - 1; k >= 0; --k)
      if (options_.checkpoint_layers[k]) return k;
    return -1;
  };
  int fetch_next = next_checkpointed(static_cast<int>(c.layers));
  if (fetch_next >= 0) act_store_->Prefetch(fetch_next);
  HeadBackward();
  for (int l = static_cast<int>(c.layers) - 1; l >= 0; --l) {
    const LayerParams w = ComputeWeights(LayerView(store.Acquire(l + 1), l));
    if (l >= 1) store.Prefetch(l);
    Tensor x = Live(resid_[l]);
    if (options_.checkpoint_layers[l]) {
      x = act_store_->Fetch(l);
      fetch_next = next_checkpointed(l);
      if (fetch_next >= 0) act_store_->Prefetch(fetch_next);
      // A checkpointed layer recomputes its activations from its saved input (bitwise the same
      // as in Forward: every kernel is deterministic). Its output lands in resid_[l + 1], which
      // backward no longer needs.
      LayerForward(w, acts_[l], x, Live(resid_[l + 1]), nullptr, l);
    }
    LayerBackward(w, l, acts_[l], x);
    store.Release(l + 1);
    if (options_.checkpoint_layers[l]) act_store_->Release(l);
    if (options_.on_layer_grads_ready) options_.on_layer_grads_ready(l);
  }
  if (!lora_) options_.backend->EmbeddingBackward(Live(tokens_), Live(d_resid_), d_embed_);
  if (options_.on_layer_grads_ready) options_.on_layer_grads_ready(-1);
}

}  // namespace seqmesh
