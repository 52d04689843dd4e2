#!/usr/bin/env bash
# bench/hdp_offload: ByteScale's selective offload executed (issue 15, item 3). Real 4-rank jobs
# (seqmesh launch: coordinator + 4 workers under mpirun, one thread each) on the same data and
# global batches, with distributed.offload off and on, under the balanced and the naive planner.
# Prints per run: the ranks each long sequence (longer than the capacity) ran on and how many
# ran with an offload ratio, tokens/s, bytes sent per step (ring KV and gradient sync, all
# ranks), the activation bytes sent to SSD, and the measured step against the plan's prediction
# under the cost file (step/pred) and under the coordinator's online refit (step/refit), medians
# over the steps after the first.
#
#   bench/hdp_offload.sh [build_dir] [steps]
#
# Data and model as bench/hdp_e2e.sh (passkey documents with byted-like lengths scaled to
# C = 1,024, documents up to 4 x C; hidden 128, 4 layers, 16,384 tokens per step). With offload
# (4 layers: ratios 1/2 and 1 offload 2 or 3 layers' saved inputs to the SSD scratch file in
# NVME_DIR, default /var/tmp) a 4,096-token document fits on 2 ranks instead of 4. COST (default
# scheduler/costs/this-cpu-4ranks.cost) must count the model's 4 layers; without ssd_*_gbps in
# it the coordinator measures the SSD. PLANNERS (default "balanced naive"), SEED (default 7).
# RANKS=2: the same documents on 2 ranks, which only offload makes possible (the run without it
# is refused by the pre-flight check, and printed as such).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
steps=${2:-12}
ranks=${RANKS:-4}
seqmesh=$build/launch/seqmesh
cost=${COST:-$root/scheduler/costs/this-cpu-4ranks.cost}
work=$(mktemp -d)
nvme=$(mktemp -d "${NVME_DIR:-/var/tmp}/seqmesh-hdp-offload-XXXXXX")
trap 'rm -rf "$nvme"; [[ -n "${KEEP:-}" ]] && echo "kept $work" >&2 || rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

source "$root/bench/hdp_job.sh"
hdp_job "$work" "$steps" "$cost" 4096
cat >> "$work/hdp.toml" <<TOML
[offload]
nvme_path = "$nvme"
TOML

printf "# %s; %d ranks x 1 thread; %d steps of 16,384 tokens; medians over steps 2..%d; cost %s\n" \
  "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" "$ranks" "$steps" "$steps" \
  "$(basename "$cost")"
printf "%-9s %-7s %9s %9s %9s %13s %12s %10s %10s %9s %10s\n" planner offload ranks/long \
  offl/step tok/s "MiB_sent/step" "act_MiB/step" predicted step step/pred step/refit
for planner in ${PLANNERS:-balanced naive}; do
  for offload in false true; do
    dir=$work/run-$planner-$offload
    args=(--distributed.planner="$planner")
    [[ $offload == true ]] && args+=(--distributed.offload=true --offload.activations='"nvme"')
    if ! "$seqmesh" launch -n "$ranks" --config "$work/hdp.toml" --checkpoint.dir="$dir" \
      "${args[@]}" > "$dir.out" 2> "$dir.err"; then
      refusal="needs [0-9]* ranks of training.micro_batch_tokens = [0-9]*; the job has [0-9]*"
      if [[ $offload == false ]] && grep -q "$refusal" "$dir.err"; then
        printf "%-9s %-7s refused: %s\n" "$planner" "$offload" "$(grep -o "$refusal" "$dir.err")"
        continue
      fi
      tail -20 "$dir.err" >&2; echo "hdp_offload: $planner offload=$offload failed" >&2; exit 1
    fi
    grep -h "SSD measured" "$dir.out" >&2 || true
    m=$dir/metrics.jsonl
    longr=$(field "$m" ranks_per_long_sequence | median)
    offl=$(field "$m" offloaded_sequences | median)
    tps=$(field "$m" tok_per_s | median)
    sent=$(field "$m" bytes_sent | median)
    act=$(field "$m" activation_out_bytes | median)
    pred=$(field "$m" estimated_step_ms | median)
    stepms=$(field "$m" step_ms | median)
    ratio=$(step_ratio "$m" step_ms estimated_step_ms)
    rratio=$(step_ratio "$m" step_ms predicted_step_ms)
    awk -v p="$planner" -v o="$offload" -v lr="$longr" -v of="$offl" -v t="$tps" -v b="$sent" \
        -v a="${act:-0}" -v pr="$pred" -v st="$stepms" -v r="$ratio" -v rr="$rratio" 'BEGIN {
      if (a == "nan") a = 0
      printf "%-9s %-7s %9.2f %9.1f %9.0f %13.2f %12.2f %10.1f %10.1f %9.2f %10.2f\n", p, o, lr,
        of, t, b / 1048576, a / 1048576, pr, st, r, rr }'
  done
done
