"""PyTorch peer of the CPU step benchmark (bench/step_cpu): one training step of the same
float32 Llama (forward, backward, clip, AdamW) in plain PyTorch, from tests/reference/llama_ref.py.

    /usr/bin/python3 bench/torch_peer.py [--threads 2] [--steps 3] [--matmul onednn|blas]

Prints one line per case, the median over --steps timed steps after one warmup step:
    torch_peer case=<one_doc|packed16> threads=N tokens_per_s=X matmul=M
one_doc is T tokens in one document; packed16 is 16 documents of T/16 tokens (attention runs per
document, so packed attention costs 1/16 of one_doc's).

Why --matmul: Debian's python3-torch is built with BLAS_INFO=generic and this machine's libblas
is netlib's reference BLAS (single-threaded, ~4 GFLOP/s), so plain `x @ w.t()` measures netlib,
not PyTorch. The same torch routes float32 convolutions to oneDNN (MKL-DNN 2.6), so with
`--matmul onednn` (the default) every product of the step -- the projections and both attention
products -- is written as a 1x1 convolution, which is the same arithmetic computed by oneDNN,
forward and backward. `--matmul blas` measures PyTorch as installed.
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
import llama_ref  # noqa: E402

# aten sends a 1x1, unstrided, batch-1 convolution to its own (BLAS) path when single-threaded;
# a stride on the width-1 axis changes nothing in the result but keeps the convolution on oneDNN.
_STRIDE = (1, 2)


class OneDnnOps:
    """llama_ref.Ops with every product as a 1x1 convolution (oneDNN)."""

    @staticmethod
    def linear(x, w):
        """x (T, in) @ w (out, in)^T as conv2d(input (1, in, T, 1), weight (out, in, 1, 1))."""
        T, cin = x.shape
        y = F.conv2d(x.t().reshape(1, cin, T, 1), w.reshape(w.shape[0], cin, 1, 1), stride=_STRIDE)
        return y.reshape(w.shape[0], T).t()

    @staticmethod
    def attention(q, k, v, cu_seqlens, scale):
        """llama_ref.attention; per document, the score matrix is kept as (heads, s_j, s_i) so
        that both products are grouped 1x1 convolutions (one group per head) with no copies."""
        T, heads, hd = q.shape
        group = heads // k.shape[1]
        cu = cu_seqlens.tolist()
        outs = []
        for b, e in zip(cu[:-1], cu[1:]):
            s = e - b
            if s == 0:
                continue
            qd = q[b:e].reshape(s, heads * hd).t().reshape(1, heads * hd, s, 1)
            kd = k[b:e].repeat_interleave(group, dim=1).transpose(0, 1)       # (heads, s, hd)
            vd = v[b:e].repeat_interleave(group, dim=1).permute(1, 2, 0)      # (heads, hd, s)
            # scores[h, j, i] = q_i . k_j: weight (heads*s_j, hd), one group per head.
            scores = F.conv2d(qd, kd.reshape(heads * s, hd, 1, 1), stride=_STRIDE, groups=heads)
            scores = scores.reshape(heads, s, s) * scale
            future = torch.ones(s, s, dtype=torch.bool).tril(-1)              # j > i, as [j, i]
            probs = torch.softmax(scores.masked_fill(future, float("-inf")), dim=1)
            # out[h, x, i] = sum_j probs[h, j, i] v[h, x, j]: weight (heads*hd, s_j).
            o = F.conv2d(probs.reshape(1, heads * s, s, 1), vd.reshape(heads * hd, s, 1, 1),
                         stride=_STRIDE, groups=heads)
            outs.append(o.reshape(heads, hd, s).permute(2, 0, 1))             # (s, heads, hd)
        return torch.cat(outs, dim=0)


def check_ops(ops):
    """The substituted ops match llama_ref's on a small packed model: logits and gradients."""
    cfg = llama_ref.Config(vocab=101, hidden=64, layers=2, heads=4, kv_heads=2, ffn=96)
    g = torch.Generator().manual_seed(5)
    tokens, targets, cu, normalizer = llama_ref.packed_batch([20, 1, 43], cfg.vocab, g)
    results = []
    for o in (llama_ref.Ops, ops):
        params = llama_ref.init_params(cfg, torch.Generator().manual_seed(6), torch.float32)
        logits = llama_ref.forward(cfg, params, tokens, cu, o)
        llama_ref.loss_fn(logits, targets, normalizer).backward()
        results.append([logits.detach()] + [p.grad for p in params.values()])
    for want, got in zip(*results):
        err = (want - got).abs().max().item() / max(1e-6, want.abs().max().item())
        assert err < 1e-4, f"--matmul ops differ from llama_ref by {err:.2e} (relative)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per case (after 1 warmup)")
    ap.add_argument("--matmul", choices=["onednn", "blas"], default="onednn")
    ap.add_argument("--tokens", type=int, default=2048, help="tokens per step (T)")
    ap.add_argument("--layers", type=int, default=12, help="fewer layers for a quick smoke run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    assert args.tokens % 16 == 0, "--tokens must be a multiple of 16"
    ops = OneDnnOps if args.matmul == "onednn" else llama_ref.Ops
    check_ops(ops)

    cfg = llama_ref.Config(vocab=32000, hidden=768, layers=args.layers, heads=12, kv_heads=4,
                           ffn=2048, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False)
    oc = llama_ref.OptimConfig(max_lr=3e-4, min_lr=3e-5, warmup=10, total_steps=1000)
    g = torch.Generator().manual_seed(0)
    params = llama_ref.init_params(cfg, g, torch.float32)
    opt = llama_ref.make_optimizer(params, oc)
    T = args.tokens

    cases = {"one_doc": [T], "packed16": [T // 16] * 16}
    step = 0
    for case, doc_lens in cases.items():
        tokens, targets, cu, normalizer = llama_ref.packed_batch(doc_lens, cfg.vocab, g)
        times = []
        for i in range(1 + args.steps):
            t0 = time.perf_counter()
            llama_ref.train_step(cfg, params, opt, oc, step, tokens, cu, targets, normalizer, ops)
            dt = time.perf_counter() - t0
            step += 1
            if i > 0:
                times.append(dt)
        print(f"torch_peer case={case} threads={args.threads} "
              f"tokens_per_s={T / statistics.median(times):.1f} matmul={args.matmul}", flush=True)


if __name__ == "__main__":
    main()
