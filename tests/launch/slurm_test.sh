#!/usr/bin/env bash
# A real Slurm (issue 19, item 4): a one-node cluster of Debian's slurmctld, slurmd and munge
# (scripts/slurm-cluster.sh), and examples/slurm.sbatch as a user submits it. A 4-rank job is
# submitted, cancelled with scancel once it has committed a checkpoint (the ranks take Slurm's
# SIGTERM as the graceful stop: the coordinator makes a step the last and commits it, inside
# KillWait), and submitted again: the script resumes it from that checkpoint, and the final
# parameters and moments are bitwise those of one uninterrupted submission. The learning rate is
# constant (min_lr = lr), so the cancelled job's 400 steps and the rest's schedule agree.
# Exits 77 (CTest: skipped) without root or without slurm-wlm and munge installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seqmesh=$(realpath "$1")
work=$(mktemp -d)
cleanup() {
  [[ -n "${SLURM_CONF:-}" ]] && scancel --full -u root 2> /dev/null || true
  "$root/scripts/slurm-cluster.sh" stop "$work/cluster" || true
  pkill -9 -f "$work/" 2> /dev/null || true
  [[ -n "${KEEP:-}" ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
. "$(dirname "$0")/e2e_data.sh"
[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root (slurmd)" >&2; exit 77; }
for tool in slurmctld slurmd munged sbatch; do
  if ! command -v $tool > /dev/null; then
    echo "SKIP: $tool not installed (slurm-wlm, munge)" >&2
    exit 77
  fi
done
eval "$("$root/scripts/slurm-cluster.sh" start "$work/cluster")"

export OMP_NUM_THREADS=1
tiny_data "$seqmesh" "$work"
tiny_config "$work/tiny.toml" "$work/data" 4
export SEQMESH=$seqmesh
submit() {  # output file, run dir, overrides...: prints the job id
  local out=$1 dir=$2; shift 2
  sbatch --parsable -n 4 --ntasks-per-node=4 --cpus-per-task=1 -o "$out" \
    "$root/examples/slurm.sbatch" "$work/tiny.toml" "$dir" "$@"
}
wait_job() {  # job id: until it leaves the queue
  for _ in $(seq 1 1200); do
    [[ -z $(squeue -h -j "$1" 2> /dev/null) ]] && return 0
    sleep 0.1
  done
  fail "job $1 still queued or running after 120 s: $(squeue -j "$1")"
}

job=$(submit "$work/a1.out" "$work/a" --training.steps=400)
for _ in $(seq 1 1200); do
  [[ -f "$work/a/step-00000004/manifest.json" ]] && break
  sleep 0.1
done
[[ -f "$work/a/step-00000004/manifest.json" ]] \
  || fail "no checkpoint after step 4: $(tail -5 "$work/a1.out")"
scancel "$job"
wait_job "$job"
grep -q "coordinator: stopped after [0-9]* steps; checkpoint" "$work/a1.out" \
  || fail "scancel: no graceful stop: $(grep -v '^\[' "$work/a1.out" | tail -8)"
newest=$(ls -d "$work"/a/step-*/manifest.json | tail -1 | sed 's/.*step-0*\([0-9]*\)\/.*/\1/')
(( newest > 4 && newest < 400 )) || fail "the checkpoint after scancel is step $newest"
echo "ok: sbatch, then scancel after step 4: the job stopped with a checkpoint at step $newest"

end=$((newest + 3))
job=$(submit "$work/a2.out" "$work/a" --training.steps=$end)
wait_job "$job"
grep -q "fresh start" "$work/a2.out" && fail "the second submission did not resume"
grep -q "training steps $((newest + 1))..$end" "$work/a2.out" \
  || fail "the second submission did not continue at step $((newest + 1)):" \
    "$(grep -v '^\[' "$work/a2.out" | tail -5)"
job=$(submit "$work/ref.out" "$work/ref" --training.steps=$end)
wait_job "$job"
step=$(printf 'step-%08d' "$end")
for f in model.safetensors optimizer-rank-00000.safetensors optimizer-rank-00003.safetensors; do
  cmp "$work/ref/$step/$f" "$work/a/$step/$f" \
    || fail "$f after scancel and resubmission differs from one uninterrupted submission's"
done
echo "ok: resubmitted, the job resumed at step $((newest + 1)) and ended at $end," \
  "bitwise the uninterrupted one"
