"""Plain-PyTorch Llama-style decoder: the reference the C++ runtime is tested against.

Owns the exact semantics seqmesh implements (DESIGN.md section 5):
  * parameters use Hugging Face Llama names and shapes (see `param_shapes`); no biases;
  * the input is a packed micro-batch: tokens (T,) and cu_seqlens (docs+1,) with cu[0] = 0 and
    cu[-1] = T; attention is causal within a document and never crosses a document boundary;
    RoPE positions restart at 0 at each document start;
  * RMSNorm y = w * x / sqrt(mean(x^2) + eps); RoPE in the HF rotate_half convention; GQA where
    query head h reads kv head h // (heads / kv_heads); SwiGLU MLP;
  * loss = sum of token cross-entropies over targets != -100, divided by a caller-given normalizer;
  * AdamW (torch.optim.AdamW) with decay on ndim >= 2 params only, global-norm clipping, and a
    linear-warmup + cosine schedule (`lr_at`).

Everything runs in the dtype of the parameters: float64 for fixtures, float32 for the benchmark
peer. Attention materializes each document's s x s score matrix (a reference, not a kernel).
"""

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclasses.dataclass(frozen=True)
class Config:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        assert self.hidden % self.heads == 0, "hidden must be a multiple of heads"
        return self.hidden // self.heads

    def __post_init__(self):
        assert self.heads % self.kv_heads == 0, "heads must be a multiple of kv_heads"
        assert self.head_dim % 2 == 0, "RoPE needs an even head_dim"


def param_shapes(cfg: Config) -> List[Tuple[str, Tuple[int, ...]]]:
    """(HF name, shape) of every parameter, in the canonical (file) order."""
    H, V, F_, hd = cfg.hidden, cfg.vocab, cfg.ffn, cfg.head_dim
    out = [("model.embed_tokens.weight", (V, H))]
    for l in range(cfg.layers):
        p = f"model.layers.{l}."
        out += [
            (p + "input_layernorm.weight", (H,)),
            (p + "self_attn.q_proj.weight", (cfg.heads * hd, H)),
            (p + "self_attn.k_proj.weight", (cfg.kv_heads * hd, H)),
            (p + "self_attn.v_proj.weight", (cfg.kv_heads * hd, H)),
            (p + "self_attn.o_proj.weight", (H, cfg.heads * hd)),
            (p + "post_attention_layernorm.weight", (H,)),
            (p + "mlp.gate_proj.weight", (F_, H)),
            (p + "mlp.up_proj.weight", (F_, H)),
            (p + "mlp.down_proj.weight", (H, F_)),
        ]
    out.append(("model.norm.weight", (H,)))
    if not cfg.tie_embeddings:
        out.append(("lm_head.weight", (V, H)))
    return out


def init_params(cfg: Config, generator: torch.Generator,
                dtype: torch.dtype = torch.float32) -> Dict[str, torch.Tensor]:
    """Draws weights in float32 (in `param_shapes` order), then casts to `dtype`.

    Matrices: N(0,1)/sqrt(fan_in), fan_in = last dim. Embedding: 0.5*N(0,1).
    Norm weights: 1 + 0.1*N(0,1). Returned tensors are leaves with requires_grad.
    """
    params = {}
    for name, shape in param_shapes(cfg):
        w = torch.randn(shape, generator=generator, dtype=torch.float32)
        if name == "model.embed_tokens.weight":
            w = w * 0.5
        elif len(shape) == 1:
            w = 1.0 + 0.1 * w
        else:
            w = w / math.sqrt(shape[-1])
        params[name] = w.to(dtype).requires_grad_(True)
    return params


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def positions(cu_seqlens: torch.Tensor, T: int) -> torch.Tensor:
    """(T,) position of each token within its document."""
    cu = cu_seqlens.tolist()
    assert cu[0] == 0 and cu[-1] == T, f"cu_seqlens {cu} must start at 0 and end at T={T}"
    pos = torch.empty(T, dtype=torch.long)
    for b, e in zip(cu[:-1], cu[1:]):
        assert e >= b, f"cu_seqlens {cu} must be non-decreasing"
        pos[b:e] = torch.arange(e - b)
    return pos


def rope_cos_sin(pos: torch.Tensor, head_dim: int, theta: float,
                 dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, 1, head_dim) in the HF layout emb = cat(angle, angle)."""
    # Computed in float64 and cast, so the float32 peer and float64 fixtures share the angles.
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angle = pos.to(torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat([angle, angle], dim=-1)[:, None, :]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (T, heads, head_dim)."""
    return x * cos + rotate_half(x) * sin


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
              scale: float, return_lse: bool = False):
    """Packed causal attention, one document at a time.

    q: (T, heads, hd); k, v: (T, kv_heads, hd); returns out (T, heads, hd) and, when asked,
    lse (heads, T) = natural-log log-sum-exp of each row's scaled, masked scores.
    """
    T, heads, hd = q.shape
    group = heads // k.shape[1]
    cu = cu_seqlens.tolist()
    outs, lses = [], []
    for b, e in zip(cu[:-1], cu[1:]):
        s = e - b
        if s == 0:
            continue
        qd = q[b:e].transpose(0, 1)                                   # (heads, s, hd)
        kd = k[b:e].repeat_interleave(group, dim=1).transpose(0, 1)   # (heads, s, hd), HF repeat_kv
        vd = v[b:e].repeat_interleave(group, dim=1).transpose(0, 1)
        scores = torch.matmul(qd, kd.transpose(1, 2)) * scale         # (heads, s, s)
        causal = torch.ones(s, s, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        if return_lse:
            lses.append(torch.logsumexp(scores, dim=-1))              # (heads, s)
        probs = torch.softmax(scores, dim=-1)
        outs.append(torch.matmul(probs, vd).transpose(0, 1))          # (s, heads, hd)
    out = torch.cat(outs, dim=0) if outs else q.new_zeros(q.shape)
    if return_lse:
        return out, torch.cat(lses, dim=1)
    return out


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (T, in) @ w (out, in)^T."""
    return x @ w.t()


class Ops:
    """The two products `forward` is built from. The reference uses these; the benchmark peer
    substitutes faster implementations of the same arithmetic (bench/torch_peer.py)."""
    linear = staticmethod(linear)
    attention = staticmethod(attention)


def forward(cfg: Config, params: Dict[str, torch.Tensor], tokens: torch.Tensor,
            cu_seqlens: torch.Tensor, ops=Ops) -> torch.Tensor:
    """tokens (T,) int, cu_seqlens (docs+1,) int -> logits (T, V)."""
    T = tokens.shape[0]
    hd = cfg.head_dim
    dtype = params["model.embed_tokens.weight"].dtype
    cos, sin = rope_cos_sin(positions(cu_seqlens, T), hd, cfg.rope_theta, dtype)
    scale = 1.0 / math.sqrt(hd)

    x = params["model.embed_tokens.weight"][tokens.long()]            # (T, H)
    for l in range(cfg.layers):
        p = f"model.layers.{l}."
        n = rms_norm(x, params[p + "input_layernorm.weight"], cfg.norm_eps)
        q = ops.linear(n, params[p + "self_attn.q_proj.weight"]).view(T, cfg.heads, hd)
        k = ops.linear(n, params[p + "self_attn.k_proj.weight"]).view(T, cfg.kv_heads, hd)
        v = ops.linear(n, params[p + "self_attn.v_proj.weight"]).view(T, cfg.kv_heads, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        a = ops.attention(q, k, v, cu_seqlens, scale).reshape(T, cfg.heads * hd)
        x = x + ops.linear(a, params[p + "self_attn.o_proj.weight"])
        n = rms_norm(x, params[p + "post_attention_layernorm.weight"], cfg.norm_eps)
        g = ops.linear(n, params[p + "mlp.gate_proj.weight"])
        u = ops.linear(n, params[p + "mlp.up_proj.weight"])
        x = x + ops.linear(F.silu(g) * u, params[p + "mlp.down_proj.weight"])
    x = rms_norm(x, params["model.norm.weight"], cfg.norm_eps)
    head = params["model.embed_tokens.weight" if cfg.tie_embeddings else "lm_head.weight"]
    return ops.linear(x, head)


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, normalizer: float) -> torch.Tensor:
    """Sum of cross-entropies over targets != -100, divided by `normalizer`."""
    ce = F.cross_entropy(logits, targets.long(), ignore_index=IGNORE_INDEX, reduction="sum")
    return ce / normalizer


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    max_lr: float = 1e-2
    min_lr: float = 1e-3
    warmup: int = 2
    total_steps: int = 5
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip: float = 1.0


def lr_at(oc: OptimConfig, k: int) -> float:
    """Learning rate of 0-based step k: linear warmup, then cosine from max_lr to min_lr."""
    if k < oc.warmup:
        return oc.max_lr * (k + 1) / oc.warmup
    p = min(1.0, (k - oc.warmup) / max(1, oc.total_steps - oc.warmup))
    return oc.min_lr + 0.5 * (oc.max_lr - oc.min_lr) * (1.0 + math.cos(math.pi * p))


def make_optimizer(params: Dict[str, torch.Tensor], oc: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on ndim >= 2 params (matrices, embeddings) and none on norms."""
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": oc.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # foreach=False: the plain per-tensor loop, the arithmetic seqmesh mirrors.
    return torch.optim.AdamW(groups, lr=oc.max_lr, betas=(oc.beta1, oc.beta2), eps=oc.eps,
                             foreach=False)


def train_step(cfg: Config, params: Dict[str, torch.Tensor], opt: torch.optim.AdamW,
               oc: OptimConfig, k: int, tokens: torch.Tensor, cu_seqlens: torch.Tensor,
               targets: torch.Tensor, normalizer: float, ops=Ops) -> Tuple[float, float, float]:
    """One step: forward, backward, clip (global L2 norm), set lr, AdamW update.

    Returns (loss before the update, pre-clip total grad norm, lr used).
    """
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(forward(cfg, params, tokens, cu_seqlens, ops), targets, normalizer)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(list(params.values()), oc.clip)
    lr = lr_at(oc, k)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    return float(loss.detach()), float(norm), lr


def packed_batch(doc_lens: List[int], vocab: int, generator: torch.Generator,
                 ignore: Optional[List[int]] = None):
    """Random tokens for documents of `doc_lens`; targets = next token within the document,
    -100 at each document's last token and at the extra indices `ignore`.

    Returns tokens (T,) i32, targets (T,) i32, cu_seqlens (docs+1,) i32, normalizer (count of
    non-ignored targets).
    """
    T = sum(doc_lens)
    tokens = torch.randint(0, vocab, (T,), generator=generator, dtype=torch.int64)
    cu = [0]
    for n in doc_lens:
        cu.append(cu[-1] + n)
    targets = torch.full((T,), IGNORE_INDEX, dtype=torch.int64)
    for b, e in zip(cu[:-1], cu[1:]):
        targets[b:e - 1] = tokens[b + 1:e]
    for i in ignore or []:
        targets[i] = IGNORE_INDEX
    normalizer = int((targets != IGNORE_INDEX).sum())
    return (tokens.to(torch.int32), targets.to(torch.int32),
            torch.tensor(cu, dtype=torch.int32), normalizer)
