#!/usr/bin/env bash
# What a user sees on a bad input (issue 13, item 7): one line, `seqmesh CMD: error: ...`, that
# names the problem and the fix, without the check's expression or source location, which
# SEQMESH_DEBUG=1 adds; `seqmesh train` without a dataset shows the `seqmesh prep` command.
set -euo pipefail
seqmesh=$1
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '[training]\nsteps = 0\n' > "$work/bad.toml"

if "$seqmesh" train --config "$work/bad.toml" > /dev/null 2> "$work/err"; then fail "steps = 0 ran"; fi
[ "$(cat "$work/err")" = "seqmesh train: error: training.steps must be >= 1, got 0" ] ||
  fail "not one clean line: $(cat "$work/err")"
if SEQMESH_DEBUG=1 "$seqmesh" train --config "$work/bad.toml" > /dev/null 2> "$work/err"; then
  fail "steps = 0 ran"
fi
grep -q "training.steps must be >= 1, got 0 (check \`.*\` failed at .*run_config.cc:[0-9]*)" \
  "$work/err" || fail "SEQMESH_DEBUG=1 shows no location: $(cat "$work/err")"

if "$seqmesh" train --config "$work/missing.toml" > /dev/null 2> "$work/err"; then fail "ran"; fi
grep -q "cannot read the config file '$work/missing.toml': No such file or directory" \
  "$work/err" || fail "missing file: $(cat "$work/err")"
if "$seqmesh" train --config "$work" > /dev/null 2> "$work/err"; then fail "a directory ran"; fi
grep -q "is a directory" "$work/err" || fail "directory: $(cat "$work/err")"

printf '[training]\nsteps = 1\n' > "$work/nodata.toml"
if "$seqmesh" train --config "$work/nodata.toml" --checkpoint.dir="\"$work/run\"" \
  --optimizer.warmup_steps=0 > /dev/null 2> "$work/err"; then
  fail "trained without data"
fi
grep -q 'data.path is not set: make a dataset with `seqmesh prep --output' "$work/err" ||
  fail "no dataset: $(cat "$work/err")"
[ "$(wc -l < "$work/err")" -eq 1 ] || fail "more than one line: $(cat "$work/err")"
echo PASS
