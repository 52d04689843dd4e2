#!/usr/bin/env bash
# `seqmesh simulate`: each planner's speedup is the static mesh's step over its own, whatever
# order --planners lists them in; a cost file with refit factors (scale_<D>) scales the steps.
set -euo pipefail
seqmesh=$1
costs=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
sim() {  # cost, planners
  "$seqmesh" simulate --ranks 4 --capacity 1024 --batch-tokens 16K --context 4K \
    --lengths byted-like --cost "$1" --seeds 1 --json --planners "$2"
}
field() { sed -n "s/.*\"planner\": \"$2\".*\"$3\": \([-0-9.eE+]*\).*/\1/p" <<< "$1"; }

out=$(sim "$costs/this-cpu-4ranks.cost" balanced,naive,static)
static=$(field "$out" static step_ms)
for p in balanced naive; do
  step=$(field "$out" $p step_ms)
  speedup=$(field "$out" $p speedup_vs_static)
  awk -v s="$static" -v t="$step" -v r="$speedup" 'BEGIN {
    want = s / t; d = r - want; if (d < 0) d = -d; exit !(want > 0 && d < 1e-3 * want) }' \
    || fail "$p: speedup $speedup, want $static / $step"
done
[[ $(field "$out" static speedup_vs_static) == 1.000000 ]] || fail "static speedup is not 1"

# Refit factors: every ring size twice as slow doubles the passes; the fixed time is unchanged.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$costs/this-cpu-4ranks.cost" "$work/slow.cost"
printf 'scale_1 2\nscale_2 2\nscale_3 2\nscale_4 2\n' >> "$work/slow.cost"
fixed=$(sed -n 's/^step_fixed_ms \(.*\)/\1/p' "$costs/this-cpu-4ranks.cost")
base=$(field "$(sim "$costs/this-cpu-4ranks.cost" balanced)" balanced step_ms)
slow=$(field "$(sim "$work/slow.cost" balanced)" balanced step_ms)
awk -v b="$base" -v s="$slow" -v f="$fixed" 'BEGIN {
  want = 2 * (b - f) + f; d = s - want; if (d < 0) d = -d; exit !(d < 1e-3 * want) }' \
  || fail "scale_<D> 2: step $slow, want 2 x ($base - $fixed) + $fixed"
printf 'scale_2 0\n' >> "$work/slow.cost"
"$seqmesh" simulate --ranks 4 --capacity 1024 --batch-tokens 16K --context 4K \
  --lengths byted-like --cost "$work/slow.cost" --seeds 1 2> "$work/err" && fail "scale_2 0 accepted"
grep -q "scale_2 must be > 0" "$work/err" || fail "bad scale error: $(cat "$work/err")"
# A cost file records the machine it was profiled on; one from another machine is named, with
# the command that profiles this one (issue 13, item 11).
sed 's/^machine_cpu .*/machine_cpu Some_Other_CPU/' "$costs/this-cpu-4ranks.cost" > "$work/other.cost"
sim "$work/other.cost" balanced > /dev/null 2> "$work/err"
grep -q "simulate: warning: the cost file '.*other.cost' describes another machine: it was profiled on Some_Other_CPU (avx512, 1 thread(s) per rank, 4 rank(s), gpu none), this is .*Profile this one: seqmesh profile" \
  "$work/err" || fail "no machine warning: $(cat "$work/err")"
sim "$costs/h100-like.cost" balanced > /dev/null 2> "$work/err"
[[ ! -s "$work/err" ]] || fail "a cost file without a machine warned: $(cat "$work/err")"
echo "simulate_cli_test ok: static $static ms; balanced at scale 2: $slow ms (from $base)"
