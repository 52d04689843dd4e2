#!/usr/bin/env bash
# bench/finetune_step.sh: LoRA and bf16 steps against a full fp32 fine-tuning step of the same
# model on the same data, in one run (issue 18, items 4 and 5). `seqmesh train` runs each
# configuration as its own process:
#   full       every weight trains in fp32: gradients and AdamW moments for all of them (anchor)
#   lora       [lora] rank 16, alpha 32, all seven projections: the base frozen (no weight
#              gradients, no moments), adapters and their moments only
#   full_bf16  training.precision = "bf16": bf16 GEMMs with fp32 accumulation and master weights
#   lora_bf16  both
# Figures (medians of the timed steps, the first step left out as warm-up):
#   step_ms        median step time, and lora / full
#   resident_mib   resident memory during the last step (the trainer's mem_mib)
#   peak_mib       the process's peak resident set (/usr/bin/time's maximum RSS)
#   bench/finetune_step.sh [BUILD_DIR] [--steps N] [--hidden H --layers L --ffn F --vocab V]
set -euo pipefail
build=${1:-build}
[[ $# -gt 0 ]] && shift
steps=6 hidden=768 layers=12 heads=12 kv_heads=4 ffn=2048 vocab=32000 tokens=2048 threads=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --hidden) hidden=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --ffn) ffn=$2; shift 2 ;;
    --vocab) vocab=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "bench/finetune_step.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
seqmesh=$build/launch/seqmesh
[[ -x $seqmesh ]] || { echo "bench/finetune_step.sh: no $seqmesh; build first" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Text to train on: the licenses and copyright files every Debian system has (bytes as ids).
cat /usr/share/common-licenses/* > "$work/text.txt"
"$seqmesh" prep --max-length "$tokens" --output "$work/data" "$work/text.txt" > /dev/null
cat > "$work/run.toml" <<TOML
[model]
vocab = $vocab
hidden = $hidden
layers = $layers
heads = $heads
kv_heads = $kv_heads
ffn = $ffn
[training]
steps = $steps
global_batch_tokens = $tokens
micro_batch_tokens = $tokens
threads = $threads
log_interval = 1
[optimizer]
warmup_steps = 0
[metrics]
tensorboard = false
trace = false
TOML

run() {  # NAME ARGS...: one training process; prints its figures
  local name=$1
  shift
  /usr/bin/time -v "$seqmesh" train --config "$work/run.toml" --data.path="\"$work/data\"" \
    --checkpoint.dir="$work/$name" "$@" > "$work/$name.log" 2> "$work/$name.time" \
    || { cat "$work/$name.log" "$work/$name.time" >&2; exit 1; }
  /usr/bin/python3 - "$work/$name/metrics.jsonl" "$work/$name.time" "$name" <<'PY'
import json, re, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
timed = [l["step_ms"] for l in lines[1:]]  # the first step warms caches and pages up
peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(sys.argv[2]).read()).group(1))
print(f"{sys.argv[3]}: step_ms {statistics.median(timed):.1f} (median of {len(timed)}), "
      f"resident_mib {lines[-1]['mem_mib']:.0f}, peak_mib {peak_kib / 1024:.0f}, "
      f"mfu {statistics.median(l['mfu'] for l in lines[1:]):.3f}")
PY
  rm -rf "${work:?}/$name"  # the checkpoint (GBs for the full run)
}

echo "model: hidden $hidden, $layers layers, $heads heads ($kv_heads kv), ffn $ffn, vocab $vocab;" \
  "$tokens tokens per step, $threads threads, $steps steps"
full=$(run full)
echo "$full"
results=("$full")
for cfg in "lora --lora.rank=16 --lora.alpha=32" "full_bf16 --training.precision=\"bf16\"" \
    "lora_bf16 --lora.rank=16 --lora.alpha=32 --training.precision=\"bf16\""; do
  read -r -a args <<< "$cfg"
  r=$(run "${args[@]}")
  echo "$r"
  results+=("$r")
done
grep -h "^precision:" "$work"/full_bf16.log | head -1
/usr/bin/python3 - "${results[@]}" <<'PY'
import re, sys
rows = [(s.split(":")[0], dict((k, float(v)) for k, v in re.findall(r"(\w+) ([\d.]+)", s)))
        for s in sys.argv[1:]]
anchor = rows[0][1]
for name, r in rows[1:]:
    print(f"{name} / full: step_ms {r['step_ms'] / anchor['step_ms']:.2f}x, "
          f"resident {r['resident_mib'] / anchor['resident_mib']:.2f}x, "
          f"peak {r['peak_mib'] / anchor['peak_mib']:.2f}x")
PY
