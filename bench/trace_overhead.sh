#!/usr/bin/env bash
# What the per-rank Perfetto traces (metrics.trace, on by default) cost a job's step: a 4-rank
# `seqmesh launch` of a 4-layer model (hidden 128, capacity 512, so long documents run on rings),
# run PAIRS times with traces on and off, alternated; prints each run's median step_ms (steps 3+),
# the medians, their ratio, and the trace bytes per rank and step.
#   bench/trace_overhead.sh [SEQMESH_BINARY] [PAIRS]   (defaults: build/launch/seqmesh, 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seqmesh=$(realpath "${1:-$root/build/launch/seqmesh}")
pairs=${2:-3}
work=$(mktemp -d /tmp/trace_overhead.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/text"
for i in $(seq 1 40); do  # 40 documents of 30..830 bytes of license text
  head -c $((i * 53 % 800 + 30)) /usr/share/common-licenses/GPL-3 > "$work/text/d$i.txt"
done
"$seqmesh" prep --output "$work/data" "$work/text" > /dev/null
cat > "$work/mid.toml" <<TOML
[model]
vocab = 259
hidden = 128
layers = 4
heads = 4
kv_heads = 2
ffn = 512
[training]
steps = 12
global_batch_tokens = 8192
micro_batch_tokens = 512
threads = 1
log_interval = 100
[optimizer]
warmup_steps = 0
[data]
path = "$work/data"
[checkpoint]
interval = 0
TOML
for i in $(seq 1 "$pairs"); do
  for t in true false; do
    "$seqmesh" launch --config "$work/mid.toml" --checkpoint.dir="$work/run-$t-$i" -n 4 \
      --metrics.trace=$t > /dev/null 2>&1
  done
done
/usr/bin/python3 - "$work" "$pairs" <<'PY'
import glob, json, os, statistics, sys
work, pairs = sys.argv[1], int(sys.argv[2])
med = {}
for t in ("true", "false"):
    runs = []
    for i in range(1, pairs + 1):
        with open(f"{work}/run-{t}-{i}/metrics.jsonl") as f:
            ms = [json.loads(l)["step_ms"] for l in f if l.strip()][2:]
        runs.append(statistics.median(ms))
    med[t] = statistics.median(runs)
    print(f"trace={t}: median step_ms per run {[round(r, 1) for r in runs]}, median {med[t]:.1f}")
size = sum(os.path.getsize(p) for p in glob.glob(f"{work}/run-true-1/trace/*.json"))
print(f"on/off: {med['true'] / med['false']:.3f}; trace: {size / 4 / 12 / 1024:.1f} KiB per rank "
      f"and step")
PY
