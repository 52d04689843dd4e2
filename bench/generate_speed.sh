#!/usr/bin/env bash
# Generation speed of `seqmesh generate` (KV cache) on a random Llama-style model of about 25M
# parameters (hidden 512, 8 layers, 8 heads, 4 kv heads, ffn 1376, byte vocabulary), greedy,
# a 64-token prompt and 256 new tokens, on T threads: prefill and decode tokens/s from the
# command's --json (median of 3 runs), against the anchor measured in the same run: the same
# model generating without a cache, one full forward over the whole sequence per new token
# (seqmesh's own Model::Forward through the Python package; the C++ runs with the GIL released).
# Prefill includes oneDNN's first-call kernel generation (about 0.15 s per process), so it is a
# floor, not the prefill rate of a warm process.
#   bench/generate_speed.sh [BUILD_DIR] [THREADS]   (defaults: build, 2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$root/build}")
threads=${2:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PYTHONPATH=$build/python /usr/bin/python3 - "$build/launch/seqmesh" "$work" "$threads" <<'PY'
import json, statistics, subprocess, sys, time
import numpy as np
import seqmesh

binary, work, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
prompt, new = "x" * 64, 256
model = {"model.vocab": 259, "model.hidden": 512, "model.layers": 8, "model.heads": 8,
         "model.kv_heads": 4, "model.ffn": 1376}
config = seqmesh.Config.load(None, dict(model, **{
    "training.micro_batch_tokens": 1024, "training.threads": threads,
    "checkpoint.dir": f"{work}/run"}))
trainer = seqmesh.Trainer(config, quiet=True)
hf = trainer.save(f"{work}/hf")
params = sum(v.size for v in trainer.model.parameters().values())

runs = []
for _ in range(3):
    out = subprocess.run([binary, "generate", "--model", hf, "--prompt", prompt,
                          "--max-new-tokens", str(new), "--threads", str(threads), "--json"],
                         check=True, capture_output=True, text=True).stdout
    runs.append(json.loads(out))
assert all(r["new_tokens"] == new for r in runs), "a run stopped early (EOS): change the seed"
decode = statistics.median(r["decode_tokens_per_s"] for r in runs)
prefill = statistics.median(r["prefill_tokens_per_s"] for r in runs)

# The anchor: no cache, a full forward over prompt + generated ids for every new token (the same
# greedy ids), 64 of the 256 steps timed at evenly spaced lengths and scaled to all 256.
ids = runs[0]["prompt_ids"] + runs[0]["ids"]
steps = list(range(0, new, 4))
start = time.perf_counter()
for k in steps:
    trainer.model.forward(np.array(ids[:len(prompt) + k], dtype=np.int32))
naive = len(steps) / (time.perf_counter() - start)
print(f"model: {params / 1e6:.1f}M parameters, {threads} threads, prompt {len(prompt)}, "
      f"{new} new tokens, greedy")
print(f"prefill: {prefill:.0f} tokens/s")
print(f"decode (KV cache): {decode:.1f} tokens/s, {2 * params * decode / 1e9:.1f} GFLOP/s "
      f"(2N per token), weights read at {4 * params * decode / 1e9:.1f} GB/s (fp32, once per "
      f"token: one-row GEMMs are bound by memory bandwidth)")
print(f"decode without a cache (a full forward per token, lengths 64..319): {naive:.1f} tokens/s")
print(f"KV cache / no cache: {decode / naive:.1f}x")
PY
