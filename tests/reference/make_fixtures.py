"""Writes the PyTorch fixtures the C++ tests compare against (tests/reference/fixtures/).

    /usr/bin/python3 tests/reference/make_fixtures.py

Deterministic (fixed torch seed per file). Weights and inputs are drawn in float32; the reference
computation then runs in float64, so each stored value is the float32 rounding of a near-exact
result. Format: see `write_fixture` and fixtures/README.md.
"""

import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MAGIC = b"SMFX"
VERSION = 1
DTYPE_F32, DTYPE_I32 = 0, 1

DOC_LENS = [9, 1, 17, 6]       # T = 33
EXTRA_IGNORED = [3]            # a target inside document 0, to exercise ignore_index
TRAIN_STEPS = 5
OPTIM = llama_ref.OptimConfig(max_lr=1e-2, min_lr=1e-3, warmup=2, total_steps=5,
                              beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0)

MODELS = {
    "gqa_untied": (1001, llama_ref.Config(vocab=61, hidden=48, layers=2, heads=4, kv_heads=2,
                                          ffn=80, rope_theta=10000.0, norm_eps=1e-5,
                                          tie_embeddings=False)),
    "mha_tied": (1002, llama_ref.Config(vocab=61, hidden=48, layers=2, heads=4, kv_heads=4,
                                        ffn=80, rope_theta=10000.0, norm_eps=1e-5,
                                        tie_embeddings=True)),
    "gqa_tied_theta": (1003, llama_ref.Config(vocab=61, hidden=48, layers=3, heads=6, kv_heads=2,
                                              ffn=80, rope_theta=500000.0, norm_eps=1e-6,
                                              tie_embeddings=True)),
}


def write_fixture(path, entries):
    """entries: list of (name, value); value is a torch tensor (float -> f32, int -> i32) or a
    Python float (f32 scalar) / int (i32 scalar).

    Version 1, little-endian: b"SMFX", u32 version, u32 count; per entry: u32 name length, name
    (UTF-8), u32 dtype (0 f32, 1 i32), u32 ndim, i64 dims[ndim], numel * 4 bytes of data.
    """
    names = [n for n, _ in entries]
    assert len(set(names)) == len(names), "duplicate fixture entry"
    out = bytearray(MAGIC + struct.pack("<II", VERSION, len(entries)))
    for name, value in entries:
        if isinstance(value, bool) or isinstance(value, int):
            t = torch.tensor(int(value), dtype=torch.int32)
        elif isinstance(value, float):
            t = torch.tensor(value, dtype=torch.float32)
        else:
            t = value.detach()
            t = t.to(torch.float32) if t.is_floating_point() else t.to(torch.int32)
        dtype = DTYPE_F32 if t.dtype == torch.float32 else DTYPE_I32
        name_bytes = name.encode("utf-8")
        out += struct.pack("<I", len(name_bytes)) + name_bytes
        out += struct.pack("<II", dtype, t.dim())
        out += struct.pack(f"<{t.dim()}q", *t.shape)
        arr = t.contiguous().numpy()
        out += arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    with open(path, "wb") as f:
        f.write(out)
    print(f"wrote {path}: {len(entries)} entries, {len(out)} bytes")


def config_entries(cfg):
    return [
        ("config.vocab", cfg.vocab), ("config.hidden", cfg.hidden), ("config.layers", cfg.layers),
        ("config.heads", cfg.heads), ("config.kv_heads", cfg.kv_heads), ("config.ffn", cfg.ffn),
        ("config.tie_embeddings", int(cfg.tie_embeddings)),
        ("config.rope_theta", float(cfg.rope_theta)), ("config.norm_eps", float(cfg.norm_eps)),
    ]


def check_reference(cfg, params, tokens, cu_seqlens, logits):
    """Independent checks of the reference itself (float64):
    1. packing: each document run alone gives the same logits as its rows of the packed run;
    2. attention: the per-document loop equals one T x T block-diagonal-causal masked softmax."""
    cu = cu_seqlens.tolist()
    with torch.no_grad():
        for b, e in zip(cu[:-1], cu[1:]):
            alone = llama_ref.forward(cfg, params, tokens[b:e], torch.tensor([0, e - b]))
            err = (alone - logits[b:e]).abs().max().item()
            assert err < 1e-10, f"document [{b},{e}) alone differs from packed by {err}"
        T = tokens.shape[0]
        g = torch.Generator().manual_seed(7)
        q = torch.randn(T, cfg.heads, cfg.head_dim, generator=g, dtype=torch.float64)
        k = torch.randn(T, cfg.kv_heads, cfg.head_dim, generator=g, dtype=torch.float64)
        v = torch.randn(T, cfg.kv_heads, cfg.head_dim, generator=g, dtype=torch.float64)
        doc = torch.repeat_interleave(torch.arange(len(cu) - 1), torch.tensor(cu).diff())
        i = torch.arange(T)
        allowed = (doc[:, None] == doc[None, :]) & (i[None, :] <= i[:, None])
        group = cfg.heads // cfg.kv_heads
        kk, vv = k[:, torch.arange(cfg.heads) // group], v[:, torch.arange(cfg.heads) // group]
        s = torch.einsum("thd,shd->hts", q, kk) / math.sqrt(cfg.head_dim)
        s = s.masked_fill(~allowed, float("-inf"))
        full = torch.einsum("hts,shd->thd", torch.softmax(s, -1), vv)
        err = (full - llama_ref.attention(q, k, v, cu_seqlens, 1 / math.sqrt(cfg.head_dim)))
        assert err.abs().max().item() < 1e-12, "per-document attention != block-diagonal mask"


def make_model_fixture(name, seed, cfg):
    g = torch.Generator().manual_seed(seed)
    params32 = llama_ref.init_params(cfg, g, torch.float32)
    tokens, targets, cu_seqlens, normalizer = llama_ref.packed_batch(
        DOC_LENS, cfg.vocab, g, ignore=EXTRA_IGNORED)
    params = {n: p.detach().to(torch.float64).requires_grad_(True) for n, p in params32.items()}

    entries = config_entries(cfg)
    entries += [("batch.tokens", tokens), ("batch.targets", targets),
                ("batch.cu_seqlens", cu_seqlens), ("batch.normalizer", float(normalizer))]
    # Snapshots: the optimizer below updates params (and their .grad) in place.
    entries += [(f"param.{n}", p.detach().clone()) for n, p in params.items()]

    logits = llama_ref.forward(cfg, params, tokens, cu_seqlens)
    loss = llama_ref.loss_fn(logits, targets, normalizer)
    loss.backward()
    check_reference(cfg, params, tokens, cu_seqlens, logits.detach())
    entries += [("logits", logits.detach().clone()), ("loss", float(loss))]
    entries += [(f"grad.{n}", p.grad.detach().clone()) for n, p in params.items()]

    opt = llama_ref.make_optimizer(params, OPTIM)
    losses, norms, lrs = [], [], []
    for k in range(TRAIN_STEPS):
        l, nrm, lr = llama_ref.train_step(cfg, params, opt, OPTIM, k, tokens, cu_seqlens,
                                          targets, normalizer)
        losses.append(l)
        norms.append(nrm)
        lrs.append(lr)
    assert abs(losses[0] - float(loss)) < 1e-12
    clipped = [n > OPTIM.clip for n in norms]
    print(f"{name}: loss {float(loss):.6f} normalizer {normalizer}")
    print(f"  train losses {['%.6f' % x for x in losses]}")
    print(f"  grad norms   {['%.4f' % x for x in norms]} (clip {OPTIM.clip}: clipped {clipped})")
    assert any(clipped), f"{name}: clipping never triggered; lower OPTIM.clip"
    dt = torch.float64
    entries += [("train.losses", torch.tensor(losses, dtype=dt)),
                ("train.grad_norms", torch.tensor(norms, dtype=dt)),
                ("train.lrs", torch.tensor(lrs, dtype=dt))]
    entries += [("optim.max_lr", OPTIM.max_lr), ("optim.min_lr", OPTIM.min_lr),
                ("optim.warmup", OPTIM.warmup), ("optim.total_steps", OPTIM.total_steps),
                ("optim.beta1", OPTIM.beta1), ("optim.beta2", OPTIM.beta2),
                ("optim.eps", OPTIM.eps), ("optim.weight_decay", OPTIM.weight_decay),
                ("optim.clip", OPTIM.clip)]
    entries += [(f"final.{n}", p) for n, p in params.items()]
    write_fixture(os.path.join(FIXTURE_DIR, f"{name}.bin"), entries)


def make_attention_fixture():
    """The attention kernel alone, over documents longer than a CPU tile (and one of length 1)."""
    heads, kv_heads, hd = 4, 2, 16
    cu = [0, 300, 301, 517, 530]
    T = cu[-1]
    scale = 1.0 / math.sqrt(hd)
    g = torch.Generator().manual_seed(2001)
    q32 = torch.randn(T, heads * hd, generator=g)
    k32 = torch.randn(T, kv_heads * hd, generator=g)
    v32 = torch.randn(T, kv_heads * hd, generator=g)
    dout32 = torch.randn(T, heads * hd, generator=g)
    q, k, v = (x.to(torch.float64).requires_grad_(True) for x in (q32, k32, v32))
    cu_t = torch.tensor(cu, dtype=torch.int32)
    out, lse = llama_ref.attention(q.view(T, heads, hd), k.view(T, kv_heads, hd),
                                   v.view(T, kv_heads, hd), cu_t, scale, return_lse=True)
    out = out.reshape(T, heads * hd)
    out.backward(dout32.to(torch.float64))
    entries = [("config.heads", heads), ("config.kv_heads", kv_heads), ("config.head_dim", hd),
               ("config.scale", scale), ("cu_seqlens", cu_t),
               ("q", q32), ("k", k32), ("v", v32), ("dout", dout32),
               ("out", out), ("lse", lse), ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)]
    write_fixture(os.path.join(FIXTURE_DIR, "attention.bin"), entries)


def main():
    torch.set_num_threads(1)
    os.makedirs(FIXTURE_DIR, exist_ok=True)
    for name, (seed, cfg) in MODELS.items():
        make_model_fixture(name, seed, cfg)
    make_attention_fixture()


if __name__ == "__main__":
    main()
