"""Writes tests/reference/fixtures/rope_scaling.bin: RoPE cos/sin tables with Hugging Face's
scalings, for tests/runtime/rope_test.cc.

    /usr/bin/python3 tests/reference/make_rope_fixture.py

The inverse frequencies are transformers' formulas written out again here (modeling_rope_utils.py:
_compute_default_rope_parameters, the linear scaling's `inv_freq / factor` and
_compute_llama3_parameters), line for line with torch ops, but in float64 where transformers uses
float32: the C++ computes in double and rounds the table once, so the stored float32 values are
the rounding of a near-exact answer. Entries per case NAME: NAME.positions (P) i32, NAME.cos and
NAME.sin (P, head_dim / 2) f32, and the case's parameters as scalars (NAME.head_dim,
NAME.theta, NAME.factor, NAME.low_freq_factor, NAME.high_freq_factor,
NAME.original_max_position_embeddings; NAME.type 0 default, 1 linear, 2 llama3).
"""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import FIXTURE_DIR, write_fixture  # noqa: E402

POSITIONS = [0, 1, 2, 5, 100, 1000, 2047, 4095, 8191, 8192, 20000, 65536, 131071]

# name: (type, head_dim, theta, factor, low_freq_factor, high_freq_factor, original_max)
CASES = {
    "default": (0, 64, 500000.0, 1.0, 1.0, 4.0, 8192),
    "linear": (1, 32, 10000.0, 4.0, 1.0, 4.0, 8192),
    # Llama 3.2 1B/3B: head_dim 64, factor 32.
    "llama3_2": (2, 64, 500000.0, 32.0, 1.0, 4.0, 8192),
    # Llama 3.1 8B: head_dim 128, factor 8.
    "llama3_1": (2, 128, 500000.0, 8.0, 1.0, 4.0, 8192),
    # Uneven factors and a short original context, so every band (kept, smoothed, divided) holds
    # several frequencies of a small head.
    "llama3_small": (2, 16, 10000.0, 3.0, 2.0, 8.0, 64),
}


def default_inv_freq(base, dim):
    # _compute_default_rope_parameters
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float64) / dim))


def llama3_inv_freq(inv_freq, factor, low_freq_factor, high_freq_factor, old_context_len):
    # _compute_llama3_parameters
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (
        high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + \
        smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def main():
    entries = []
    positions = torch.tensor(POSITIONS, dtype=torch.int64)
    for name, (kind, dim, theta, factor, low, high, old) in CASES.items():
        inv_freq = default_inv_freq(theta, dim)
        if kind == 1:
            inv_freq = inv_freq / factor
        elif kind == 2:
            inv_freq = llama3_inv_freq(inv_freq, factor, low, high, old)
        # LlamaRotaryEmbedding.forward: freqs = position x inv_freq (attention_scaling is 1.0
        # for default, linear and llama3); the table is one half of cat(freqs, freqs).
        freqs = positions.to(torch.float64)[:, None] * inv_freq[None, :]
        entries += [
            (f"{name}.type", kind), (f"{name}.head_dim", dim), (f"{name}.theta", theta),
            (f"{name}.factor", factor), (f"{name}.low_freq_factor", low),
            (f"{name}.high_freq_factor", high), (f"{name}.original_max_position_embeddings", old),
            (f"{name}.positions", positions.to(torch.int32)),
            (f"{name}.cos", freqs.cos()), (f"{name}.sin", freqs.sin()),
        ]
    write_fixture(os.path.join(FIXTURE_DIR, "rope_scaling.bin"), entries)


if __name__ == "__main__":
    main()
