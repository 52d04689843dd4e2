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

# Unbounded counts are refused (issue 13, item 5: training.steps = 2^62 was accepted).
if "$seqmesh" train --config "$work/bad.toml" --training.steps=4611686018427387904 > /dev/null \
  2> "$work/err"; then fail "2^62 steps ran"; fi
grep -q "training.steps must be at most 2^40, got 4611686018427387904" "$work/err" ||
  fail "steps bound: $(cat "$work/err")"

printf '[training]\nsteps = 1\n' > "$work/nodata.toml"
if "$seqmesh" train --config "$work/nodata.toml" --checkpoint.dir="\"$work/run\"" \
  --optimizer.warmup_steps=0 > /dev/null 2> "$work/err"; then
  fail "trained without data"
fi
grep -q 'data.path is not set: make a dataset with `seqmesh prep --output' "$work/err" ||
  fail "no dataset: $(cat "$work/err")"
[ "$(wc -l < "$work/err")" -eq 1 ] || fail "more than one line: $(cat "$work/err")"
# Pre-flight (issue 13, item 5): token ids beyond the vocabulary and a model larger than the
# machine's memory are refused before training starts, each naming the fix.
printf 'some text for a dataset\n' > "$work/doc.txt"
"$seqmesh" prep --output "$work/data" "$work/doc.txt" > /dev/null
printf '[training]\nsteps = 1\n[optimizer]\nwarmup_steps = 0\n' > "$work/ok.toml"
if "$seqmesh" train --config "$work/ok.toml" --checkpoint.dir="\"$work/v\"" \
  --data.path="\"$work/data\"" --model.vocab=100 > /dev/null 2> "$work/err"; then
  fail "token ids beyond the vocabulary trained"
fi
grep -q "holds token ids up to 257 (the byte tokenizer (vocab 259)), outside model.vocab = 100: prepare the data with the model's tokenizer" \
  "$work/err" || fail "vocab: $(cat "$work/err")"
# Without the dataset's card (a Megatron-made dataset), every sequence is scanned.
rm "$work/data.dataset.json"
if "$seqmesh" train --config "$work/ok.toml" --checkpoint.dir="\"$work/v2\"" \
  --data.path="\"$work/data\"" --model.vocab=100 > /dev/null 2> "$work/err"; then
  fail "token ids beyond the vocabulary trained (no card)"
fi
grep -q "sequence 0 holds token id 257, outside model.vocab = 100" "$work/err" \
  || fail "vocab without a card: $(cat "$work/err")"
if "$seqmesh" train --config "$work/ok.toml" --checkpoint.dir="\"$work/m\"" \
  --data.path="\"$work/data\"" --model.vocab=259 --model.hidden=16384 --model.heads=128 --model.kv_heads=128 \
  --model.ffn=65536 --model.layers=64 > /dev/null 2> "$work/err"; then
  fail "a model larger than memory started"
fi
grep -q "the job needs about [0-9.]* GiB .* but this machine has [0-9.]* GiB available" "$work/err" \
  || fail "memory: $(cat "$work/err")"
# export --merge-lora names a missing adapter.
if "$seqmesh" export --merge-lora "$work/no-adapter" --base "$work" --output "$work/merged" \
    > /dev/null 2> "$work/err"; then
  fail "export merged a missing adapter"
fi
grep -q "no-adapter/adapter_config.json' does not exist" "$work/err" || fail "export: $(cat "$work/err")"
[ "$(wc -l < "$work/err")" -eq 1 ] || fail "export: more than one line: $(cat "$work/err")"
echo PASS
