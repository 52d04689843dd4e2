#!/usr/bin/env bash
# bench/hdp_e2e: real 4-rank training jobs (seqmesh launch: coordinator + 4 workers under mpirun,
# one thread each) on the same data and global batches with three planners: balanced HDP, naive
# HDP and the static DP x CP mesh. Prints, per planner, tokens/s and bytes sent per step
# (medians over the steps after the first), and the measured step against the planner's
# prediction under this machine's profiled cost file.
#
#   bench/hdp_e2e.sh [build_dir] [steps]
#
# Data: passkey documents (seqmesh synth) with byted-like lengths scaled to the tiny capacity
# (bench/byted-like-c1024.lengths: C = 1,024, documents up to 4 x C). Model: examples/text.toml's
# (hidden 128, 4 layers), 16,384 tokens per step. "predicted" is the plan's estimated step time
# (the simulator's replay of the plan under the cost file: every pass, calibrated by the file's
# pass_factor/pass_ms when profiled with --rings, exposed ring transfer, and step_fixed_ms for
# gradient sync + AdamW); "compute" is the slowest rank's forward + backward, waits for ring
# partners included; "step" adds the gradient reduction, AdamW and the plan fetch. step/pred and
# comp/pred are medians over the steps of each step's ratio. "step/refit" is the step against
# the coordinator's online prediction (distributed.refit, scheduler/refit.h): the same replay
# with each ring size's measured/estimated factor and the measured time beside the passes, both
# learned from the steps finished before the step was planned. REFIT=plan|predict|off sets
# distributed.refit (default predict: plans from the cost file alone); each run leaves the cost
# file refit on it in run-<planner>/refit.cost, and SEED=N draws other documents (default 7), so
# a refit file can be checked on data it was not fitted on. Each rank's per-pass
# trace (SEQMESH_TRACE) is kept in the run's directory (KEEP=1 keeps the work directory).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
steps=${2:-12}
ranks=${RANKS:-4}
seqmesh=$build/launch/seqmesh
cost=${COST:-$root/scheduler/costs/this-cpu-4ranks.cost}
work=$(mktemp -d)
trap '[[ -n "${KEEP:-}" ]] && echo "kept $work" >&2 || rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

source "$root/bench/hdp_job.sh"
hdp_job "$work" "$steps" "$cost" $((ranks * 1024))

printf "# %s; %d ranks x 1 thread; %d steps of 16,384 tokens; medians over steps 2..%d; cost %s\n" \
  "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" "$ranks" "$steps" "$steps" \
  "$(basename "$cost")"
printf "%-9s %9s %8s %13s %10s %10s %10s %9s %9s %10s %6s\n" planner tok/s vs_static \
  "MiB_sent/step" predicted compute step step/pred comp/pred step/refit micro
static_tps=""
for planner in ${PLANNERS:-static naive balanced}; do
  dir=$work/run-$planner
  mkdir -p "$dir/trace"
  SEQMESH_TRACE=$dir/trace "$seqmesh" launch -n "$ranks" --config "$work/hdp.toml" --checkpoint.dir="$dir" \
    --distributed.planner="$planner" --distributed.refit="${REFIT:-predict}" > "$dir.out" 2> "$dir.err" \
    || { tail -20 "$dir.err" >&2; echo "hdp_e2e: $planner run failed" >&2; exit 1; }
  m=$dir/metrics.jsonl
  tps=$(field "$m" tok_per_s | median)
  sent=$(field "$m" bytes_sent | median)
  pred=$(field "$m" estimated_step_ms | median)
  comp=$(field "$m" compute_ms | median)
  stepms=$(field "$m" step_ms | median)
  ratio=$(step_ratio "$m" step_ms estimated_step_ms)
  cratio=$(step_ratio "$m" compute_ms estimated_step_ms)
  rratio=$(step_ratio "$m" step_ms predicted_step_ms)
  micro=$(field "$m" micro_batches | median)
  [[ -z $static_tps ]] && static_tps=$tps
  awk -v p="$planner" -v t="$tps" -v s="$static_tps" -v b="$sent" -v pr="$pred" -v c="$comp" \
      -v st="$stepms" -v r="$ratio" -v cr="$cratio" -v rr="$rratio" -v mb="$micro" 'BEGIN {
    printf "%-9s %9.0f %7.2fx %13.2f %10.1f %10.1f %10.1f %9.2f %9.2f %10.2f %6d\n", p, t, t / s,
      b / 1048576, pr, c, st, r, cr, rr, mb }'
done
