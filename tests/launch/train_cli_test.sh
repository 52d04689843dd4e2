#!/usr/bin/env bash
# End-to-end test of `seqmesh prep` and `seqmesh train` on real files: an uninterrupted run and a
# run resumed from its step-4 checkpoint give identical metrics lines (losses and gradient norms
# printed at full precision); SIGINT saves a checkpoint and exits 0; a misspelled key fails
# with a suggestion.
set -euo pipefail
seqmesh=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
  for j in $(seq 1 $((i * 7))); do echo "document $i line $j: the quick brown fox $((i * j % 13))"; done \
    > "$work/doc$i.txt"
done
printf '{"text": "a json document\\nwith two lines"}\n{"text": "another"}\n' > "$work/extra.jsonl"
"$seqmesh" prep --output "$work/data" "$work"/doc*.txt > "$work/prep.log"
grep -q "12 documents" "$work/prep.log" || fail "prep: $(cat "$work/prep.log")"
"$seqmesh" prep --jsonl --output "$work/json" "$work/extra.jsonl" | grep -q "2 documents" \
  || fail "prep --jsonl"
mkdir -p "$work/tree/sub" && cp "$work/doc1.txt" "$work/tree/" && cp "$work/doc2.txt" "$work/tree/sub/"
"$seqmesh" prep --output "$work/tree_data" "$work/tree" | grep -q "2 documents" \
  || fail "prep of a directory"
printf '{"txt": "x"}\n' > "$work/bad.jsonl"
if "$seqmesh" prep --jsonl --output "$work/bad" "$work/bad.jsonl" > "$work/bad.log" 2>&1; then
  fail "a JSONL line without text was accepted"
fi
grep -q "bad.jsonl' line 1 has no \"text\" field" "$work/bad.log" || fail "$(cat "$work/bad.log")"

cat > "$work/tiny.toml" <<TOML
[model]
vocab = 259
hidden = 32
layers = 2
heads = 4
kv_heads = 2
ffn = 64
[training]
steps = 8
global_batch_tokens = 2048
micro_batch_tokens = 512
log_interval = 2
threads = 1
[optimizer]
lr = 3e-3
warmup_steps = 2
[data]
path = "$work/data"
[checkpoint]
interval = 4
keep = 3
TOML

"$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/a\"" > "$work/a.log"
"$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/b\"" > "$work/b.log"
[ -f "$work/a/step-00000008/manifest.json" ] || fail "no final checkpoint"
[ -f "$work/a/config.toml" ] || fail "resolved config not saved"
# Documents longer than micro_batch_tokens (512) are cut, and the cuts are reported.
grep -q '"cut_sequences":[1-9]' "$work/a/metrics.jsonl" || fail "no cut sequences reported"
grep -q "  cut: [1-9]" "$work/a.log" || fail "the console line does not report cuts"
# Resume b from step 4: drop its later checkpoint, then continue. The records of steps 5-8 its
# first run wrote are superseded (moved to metrics.jsonl.superseded), so the file holds each
# step once (issue 13, item 8), and every deterministic field equals the uninterrupted run's.
rm -rf "$work/b/step-00000008"
"$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/b\"" --resume > "$work/b2.log"
grep -q "resumed: .*step-00000004" "$work/b2.log" || fail "did not resume: $(cat "$work/b2.log")"
# The fields that vary from run to run (wall clock, step time, rate, memory, MFU) are left out.
stable() { sed -E 's/,"(time|step_ms|tok_per_s|mem_mib|mfu)":("[^"]*"|[-0-9.eE+]+)//g' "$1"; }
cmp <(stable "$work/a/metrics.jsonl") <(stable "$work/b/metrics.jsonl") \
  || fail "resumed run differs: $(diff <(stable "$work/a/metrics.jsonl") <(stable "$work/b/metrics.jsonl") | head)"
[ "$(wc -l < "$work/b/metrics.jsonl.superseded")" -eq 4 ] || fail "superseded records"
grep -q '"time":"20[0-9-]*T[0-9:.]*Z","step_ms":[0-9.]*,"tok_per_s":[0-9.]*,"mem_mib":[0-9.]*' \
  "$work/a/metrics.jsonl" || fail "train's records lack time, step_ms, tok_per_s or mem_mib"
first=$(head -n 1 "$work/a/metrics.jsonl" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
last=$(tail -n 1 "$work/a/metrics.jsonl" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f) }' || fail "loss did not fall ($first -> $last)"

# A used run directory (issue 13, item 3): a fresh run into it is refused naming --resume and
# --overwrite; --overwrite moves the earlier run aside (nothing deleted); --resume with a config
# that cannot follow the checkpoint is refused key by key, and other changes are reported.
if "$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/a\"" > "$work/used.log" 2>&1; then
  fail "a second run into a used directory was accepted"
fi
grep -q "holds an earlier run (.*committed checkpoint.*): continue it with --resume, or start a new one with --overwrite" \
  "$work/used.log" || fail "used directory: $(cat "$work/used.log")"
cp -r "$work/a" "$work/o"
"$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/o\"" --overwrite \
  --training.steps=2 > "$work/o.log" 2>&1 || fail "--overwrite: $(tail -3 "$work/o.log")"
aside=$(ls -d "$work"/o/overwritten-*)
[ -f "$aside/step-00000008/manifest.json" ] && [ "$(wc -l < "$aside/metrics.jsonl")" -eq 8 ] \
  || fail "--overwrite did not keep the earlier run aside"
[ "$(wc -l < "$work/o/metrics.jsonl")" -eq 2 ] || fail "--overwrite: the new run's metrics mixed"
if "$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/a\"" --resume \
  --model.hidden=48 > "$work/shape.log" 2>&1; then fail "a resume with another model shape ran"; fi
grep -q "model.hidden: 32 -> 48" "$work/shape.log" || fail "shape change: $(cat "$work/shape.log")"
"$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/a\"" --resume \
  --training.steps=9 > "$work/more.log" 2>&1 || fail "resume with more steps: $(tail -3 "$work/more.log")"
grep -q "changed from the run's configuration: training.steps: 8 -> 9" "$work/more.log" \
  || fail "the steps change was not reported: $(head -5 "$work/more.log")"

# A blend of two datasets trains, and its metrics show the step count.
"$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/blend\"" --training.steps=3 \
  --data.path="\"0.25 $work/data 0.75 $work/tree_data\"" > "$work/blend.log" \
  || fail "blend run: $(tail -3 "$work/blend.log")"
grep -q "2 dataset(s)" "$work/blend.log" || fail "blend not used: $(grep model: "$work/blend.log")"
[ "$(wc -l < "$work/blend/metrics.jsonl")" -eq 3 ] || fail "blend metrics"

# synth: the passkey appears at its hidden depth and again as the final answer, in every document.
"$seqmesh" synth --task passkey --lengths github-like --count 20 --max-length 400 --seed 3 \
  --output "$work/pk" | grep -q "20 passkey documents" || fail "synth"
od -An -tu2 -v "$work/pk.bin" | tr -s ' ' '\n' | grep -v '^$' \
  | awk '{ if ($1 == 257) printf "\n"; else if ($1 < 256) printf "%c", $1 }' > "$work/pk.txt"
[ "$(wc -l < "$work/pk.txt")" -eq 20 ] || fail "synth: expected 20 documents"
while read -r doc; do
  keys=$(echo "$doc" | grep -o 'pass key is [0-9]\{5\}' | sort -u | wc -l)
  [ "$keys" -eq 1 ] || fail "passkey document without one consistent key: $doc"
done < "$work/pk.txt"
"$seqmesh" synth --task recall --lengths byted-like --count 5 --max-length 300 \
  --output "$work/rc" | grep -q "5 recall documents" || fail "synth recall"
if "$seqmesh" synth --task nope --lengths byted-like --count 5 --max-length 300 \
  --output "$work/x" > "$work/x.log" 2>&1; then fail "unknown task accepted"; fi
grep -q "task must be passkey or recall" "$work/x.log" || fail "$(cat "$work/x.log")"
# passkey-eval scores a trained checkpoint (accuracy itself is measured in docs/BENCHMARKS.md).
"$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/pkrun\"" \
  --training.steps=2 --data.path="\"$work/pk\"" > /dev/null
"$seqmesh" passkey-eval --model "$work/pkrun/step-00000002" --data "$work/pk" \
  --last 5 | grep -q "documents 5  exact_match" || fail "passkey-eval"

# SIGINT: a checkpoint, then exit 0.
"$seqmesh" train --config "$work/tiny.toml" --checkpoint.dir="\"$work/c\"" --training.steps=100000 \
  --checkpoint.interval=0 > "$work/c.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/c/metrics.jsonl" ] && break
  sleep 0.1
done
kill -INT "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || fail "SIGINT exit status $status: $(tail -3 "$work/c.log")"
grep -q "stopping on signal 2" "$work/c.log" || fail "no stop message"
ls "$work"/c/step-*/manifest.json > /dev/null || fail "no checkpoint after SIGINT"

# A misspelled key names the closest one and fails.
if "$seqmesh" train --config "$work/tiny.toml" --training.stpes=3 > "$work/d.log" 2>&1; then
  fail "a misspelled key was accepted"
fi
grep -q "did you mean 'training.steps'" "$work/d.log" || fail "no suggestion: $(cat "$work/d.log")"
echo "train CLI: OK"
