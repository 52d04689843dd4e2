#!/usr/bin/env bash
# `seqmesh generate` and `seqmesh eval` on a checkpoint of a real `seqmesh train` run: the
# completion and its --json (ids, text, tokens/s), greedy the same twice, eval's perplexity =
# exp(loss); and what a user sees on a bad input: one line `seqmesh CMD: error: ...` naming the
# problem and the fix (a missing or run directory, an unknown tokenizer, a prompt beyond
# max_position_embeddings, a dataset of another tokenizer). The numerics are checked against
# PyTorch and the trainer in python/tests/test_generate.py and tests/runtime/generation_test.cc.
#   generate_cli_test.sh SEQMESH
set -euo pipefail
seqmesh=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
py=/usr/bin/python3
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for i in 1 2 3 4 5 6; do
  printf 'the cat sat on the mat %s times, and then the dog sat on the log.\n' "$i" > "$work/d$i.txt"
done
"$seqmesh" prep --output "$work/data" "$work"/d*.txt > /dev/null
"$seqmesh" train --config /dev/null --data.path="\"$work/data\"" --checkpoint.dir="\"$work/run\"" \
  --training.steps=2 --training.global_batch_tokens=512 --training.micro_batch_tokens=256 \
  --model.vocab=259 --model.hidden=32 --model.layers=2 --model.heads=4 --model.kv_heads=2 --model.ffn=64 \
  --optimizer.warmup_steps=0 --training.threads=1 > /dev/null 2>&1 || fail "train failed"
model=$(ls -d "$work"/run/step-* | tail -1)
[ -f "$model/config.json" ] || fail "no checkpoint in $work/run"

# One line of text on stdout (the completion), the summary on stderr.
"$seqmesh" generate --model "$model" --prompt "the cat" --max-new-tokens 12 > "$work/out" \
  2> "$work/err" || fail "generate: $(cat "$work/err")"
grep -q "^generate: 7 prompt tokens, [0-9]* new (stop: \(eos\|max_new_tokens\)), [0-9]* tokens/s$" \
  "$work/err" || fail "generate summary: $(cat "$work/err")"
"$seqmesh" generate --model "$model" --prompt "the cat" --max-new-tokens 12 --json > "$work/a.json"
"$seqmesh" generate --model "$model" --prompt "the cat" --max-new-tokens 12 --json --threads 2 \
  > "$work/b.json"
$py - "$work/a.json" "$work/b.json" <<'PY' || fail "generate --json"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["prompt_ids"] == list(b"the cat"), a["prompt_ids"]
assert 1 <= a["new_tokens"] == len(a["ids"]) <= 12
assert a["ids"] == b["ids"] and a["text"] == b["text"]  # greedy: any thread count
assert a["stop"] in ("eos", "max_new_tokens") and a["decode_tokens_per_s"] >= 0
PY

"$seqmesh" eval --model "$model" --data "$work/data" > "$work/out" || fail "eval failed"
grep -q "^eval: documents 6  tokens [0-9]*  loss [0-9.]*  perplexity [0-9.]*  [0-9]* tokens/s$" \
  "$work/out" || fail "eval line: $(cat "$work/out")"
"$seqmesh" eval --model "$model" --data "$work/data" --json --max-length 16 > "$work/e.json"
$py - "$work/e.json" <<'PY' || fail "eval --json"
import json, math, sys
e = json.load(open(sys.argv[1]))
assert e["documents"] == 6 and e["max_length"] == 16 and e["tokens"] > 6 * 60, e
assert abs(e["perplexity"] - math.exp(e["loss"])) <= 1e-9 * e["perplexity"], e
PY

# Bad inputs: one line each.
refused() {  # refused NAME EXPECTED CMD ARGS...
  local name=$1 expected=$2
  shift 2
  if "$seqmesh" "$@" > /dev/null 2> "$work/err"; then fail "$name: ran"; fi
  grep -q -- "$expected" "$work/err" || fail "$name: $(cat "$work/err")"
  [ "$(wc -l < "$work/err")" -eq 1 ] || fail "$name: more than one line: $(cat "$work/err")"
}
refused missing-dir "seqmesh generate: error: the model directory '$work/nowhere' does not exist" \
  generate --model "$work/nowhere" --prompt hi
refused run-dir "it is a run directory: pass one of its checkpoints, e.g. '$model'" \
  generate --model "$work/run" --prompt hi
refused tokenizer "the tokenizer '$work/none.json' does not exist" \
  generate --model "$model" --prompt hi --tokenizer "$work/none.json"
refused empty "the prompt is empty" generate --model "$model" --prompt ""
refused top-p "top_p must be in (0, 1], got 0" generate --model "$model" --prompt hi \
  --temperature 1 --top-p 0
mkdir "$work/short"
cp "$model/model.safetensors" "$work/short/"
$py -c "import json,sys; c=json.load(open(sys.argv[1])); c['max_position_embeddings']=16; \
json.dump(c, open(sys.argv[2], 'w'))" "$model/config.json" "$work/short/config.json"
refused long-prompt "the prompt is 20 tokens, but the model in '$work/short' holds max_position_embeddings = 16: shorten the prompt" \
  generate --model "$work/short" --prompt "aaaaaaaaaaaaaaaaaaaa"
refused long-total "pass --max-new-tokens 6 or less" \
  generate --model "$work/short" --prompt "aaaaaaaaaa" --max-new-tokens 7
refused eval-data "the dataset '$work/nodata' does not exist" \
  eval --model "$model" --data "$work/nodata"
cp "$model/config.json" "$model/model.safetensors" "$work/short/"
echo '{"model": {"type": "BPE", "vocab": {}, "merges": []}}' > "$work/short/tokenizer.json"
refused eval-tokenizer "dataset '$work/data' was tokenized with the byte tokenizer (vocab 259), but --model $work/short ships tokenizer.json" \
  eval --model "$work/short" --data "$work/data"

# A Llama 2 shaped tokenizer.json (its template puts <s> = 1 before a document) in the model
# directory is the default tokenizer: the prompt starts with BOS, and decoding stops at </s>.
mkdir "$work/llama"
$py "$root/tests/launch/prep_tokenizer_files.py" make-llama "$work/llama"  # 264 ids
refused vocab-small "the tokenizer '$work/llama' has 264 ids but the model in '$model' has vocab_size 259" \
  generate --model "$model" --prompt hi --tokenizer "$work/llama"
"$seqmesh" train --config /dev/null --data.path="\"$work/data\"" --checkpoint.dir="\"$work/run264\"" \
  --training.steps=1 --training.global_batch_tokens=512 --training.micro_batch_tokens=256 \
  --model.vocab=264 --model.hidden=32 --model.layers=2 --model.heads=4 --model.kv_heads=2 \
  --model.ffn=64 --optimizer.warmup_steps=0 --training.threads=1 > /dev/null 2>&1 ||
  fail "train (vocab 264) failed"
refused no-tokenizer "has no tokenizer (tokenizer.json or a .tiktoken file) and its vocab_size 264 is not the byte tokenizer's 259: pass --tokenizer PATH" \
  generate --model "$work/run264/step-00000001" --prompt hi
cp "$work/llama"/tokenizer*.json "$work/run264/step-00000001/"
"$seqmesh" generate --model "$work/run264/step-00000001" --prompt "hi hi" --max-new-tokens 5 \
  --json > "$work/l.json" || fail "generate with the directory's tokenizer.json"
$py - "$work/l.json" "$work/run264/step-00000001" <<'PY' || fail "generate with tokenizer.json"
import json, sys
g = json.load(open(sys.argv[1]))
assert g["tokenizer"] == sys.argv[2], g["tokenizer"]
assert g["prompt_ids"][0] == 1 and len(g["prompt_ids"]) >= 2, g["prompt_ids"]  # <s>, then "hi hi"
assert g["stop"] == "max_new_tokens" or g["ids"][-1] == 2, g
PY
echo PASS
