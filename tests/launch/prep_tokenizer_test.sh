#!/usr/bin/env bash
# `seqmesh prep --tokenizer` and the vocabulary checks of `train` (issue 18, item 2), on crafted
# tokenizer.json files whose ids are known exactly:
#   - a GPT-2 shaped file: exact ids (merges, the byte-level space), EOS appended, uint16 ids;
#   - the same shape with 70,000 ids: int32 ids (Megatron's rule: uint16 below 65,500);
#   - a Llama 2 shaped directory: the template's BOS first, byte fallback, EOS from
#     tokenizer_config.json;
#   - the output is byte-identical on 1 and 2 threads, on many documents;
#   - PREFIX.dataset.json records the tokenizer (kind, file, hash, vocab, bos, eos);
#   - train refuses ids beyond model.vocab, and an --init-from model whose tokenizer file or vocab
#     is not the dataset's, each with one line that names the fix; the matching one trains.
#   prep_tokenizer_test.sh SEQMESH
set -euo pipefail
seqmesh=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
files=$root/tests/launch/prep_tokenizer_files.py
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR
py() { /usr/bin/python3 "$@"; }
card() { py -c "import json,sys; c=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# (1) GPT-2 shaped, exact ids.
py "$files" make-bytelevel "$work/gpt2.json" 300
printf 'ab ab' > "$work/a.txt"
printf 'a tab' > "$work/b.txt"
"$seqmesh" prep --tokenizer "$work/gpt2.json" --output "$work/g" "$work/a.txt" "$work/b.txt" \
  > "$work/g.log" || fail "prep: $(cat "$work/g.log")"
grep -q "uint16 ids" "$work/g.log" || fail "not uint16: $(cat "$work/g.log")"
py "$files" read "$work/g" > "$work/g.ids"
[[ $(sed -n 1p "$work/g.ids") == 8 ]] || fail "dtype code $(sed -n 1p "$work/g.ids"), not 8"
[[ $(sed -n 2p "$work/g.ids") == "[256,32,256,299]" ]] || fail "ids of 'ab ab': $(sed -n 2p "$work/g.ids")"
[[ $(sed -n 3p "$work/g.ids") == "[97,257,256,299]" ]] || fail "ids of 'a tab': $(sed -n 3p "$work/g.ids")"
[[ $(card "$work/g.dataset.json" "c['tokenizer']['kind'], c['tokenizer']['file'], c['tokenizer']['vocab_size'], c['tokenizer']['bos'], c['tokenizer']['eos'], c['documents'], c['tokens'], c['max_token_id']") == \
   "('tokenizer.json', 'gpt2.json', 300, -1, 299, 2, 8, 299)" ]] || fail "card: $(cat "$work/g.dataset.json")"
hash=$(py -c "
import sys
h = 0xcbf29ce484222325
for b in open(sys.argv[1], 'rb').read():
    h = ((h ^ b) * 0x100000001b3) % 2**64
print(f'{h:016x}')" "$work/gpt2.json")
[[ $(card "$work/g.dataset.json" "c['tokenizer']['fnv1a64']") == "$hash" ]] || fail "card hash, not $hash"
echo "ok: GPT-2 shaped ids exact, uint16, card"

# (2) 70,000 ids: int32.
py "$files" make-bytelevel "$work/big.json" 70000
"$seqmesh" prep --tokenizer "$work/big.json" --output "$work/big" "$work/a.txt" > "$work/big.log"
py "$files" read "$work/big" > "$work/big.ids"
[[ $(sed -n 1p "$work/big.ids") == 4 ]] || fail "70,000 ids: dtype code $(sed -n 1p "$work/big.ids"), not 4 (int32)"
[[ $(sed -n 2p "$work/big.ids") == "[256,32,256,69999]" ]] || fail "int32 ids: $(sed -n 2p "$work/big.ids")"
echo "ok: 70,000 ids are written as int32"

# (3) Llama 2 shaped directory: BOS from the template, EOS from tokenizer_config.json.
mkdir -p "$work/llama"
py "$files" make-llama "$work/llama"
printf 'hi hi' > "$work/c.txt"
printf 'hix' > "$work/d.txt"
"$seqmesh" prep --tokenizer "$work/llama" --output "$work/l" "$work/c.txt" "$work/d.txt" > /dev/null
py "$files" read "$work/l" > "$work/l.ids"
[[ $(sed -n 2p "$work/l.ids") == "[1,263,263,2]" ]] || fail "llama ids of 'hi hi': $(sed -n 2p "$work/l.ids")"
[[ $(sed -n 3p "$work/l.ids") == "[1,263,123,2]" ]] || fail "llama ids of 'hix': $(sed -n 3p "$work/l.ids")"
[[ $(card "$work/l.dataset.json" "c['tokenizer']['bos'], c['tokenizer']['eos']") == "(1, 2)" ]] \
  || fail "llama card: $(cat "$work/l.dataset.json")"
"$seqmesh" prep --no-eos --tokenizer "$work/llama" --output "$work/l2" "$work/c.txt" > /dev/null
[[ $(py "$files" read "$work/l2" | sed -n 2p) == "[1,263,263]" ]] || fail "--no-eos kept EOS"
echo "ok: Llama 2 shaped: BOS from the template, byte fallback, EOS from tokenizer_config.json"

# (4) 1 thread and 2 threads write the same bytes (many documents, a JSONL file too).
mkdir -p "$work/many"
for i in $(seq 1 300); do
  for j in $(seq 1 $((i % 17 + 1))); do printf 'ab a tab %d\n' $((i * j)); done > "$work/many/$i.txt"
done
py -c "
import json
for i in range(500):
    print(json.dumps({'text': 'ab ' * (i % 11) + 'tab ' + str(i)}))" > "$work/many.jsonl"
for t in 1 2; do
  "$seqmesh" prep --threads $t --tokenizer "$work/gpt2.json" --output "$work/t$t" "$work/many" \
    > /dev/null
  "$seqmesh" prep --threads $t --jsonl --tokenizer "$work/gpt2.json" --output "$work/j$t" \
    "$work/many.jsonl" > /dev/null
done
for x in t j; do
  for ext in bin idx dataset.json; do
    cmp -s "$work/${x}1.$ext" "$work/${x}2.$ext" || fail "$x: .$ext differs between 1 and 2 threads"
  done
done
echo "ok: 1 and 2 threads write identical .bin/.idx/.dataset.json"
# An output that would replace an input is refused, and the input is kept.
cp "$work/a.txt" "$work/in.bin"
if "$seqmesh" prep --output "$work/in" "$work/in.bin" > "$work/over.log" 2>&1; then
  fail "prep overwrote its input"
fi
grep -q "would overwrite the input" "$work/over.log" || fail "$(cat "$work/over.log")"
cmp -s "$work/a.txt" "$work/in.bin" || fail "the input was changed"
echo "ok: $(cat "$work/over.log")"

# (5) train: ids beyond model.vocab, and --init-from.
cat > "$work/tiny.toml" <<TOML
[model]
vocab = 300
hidden = 32
layers = 1
heads = 4
kv_heads = 2
ffn = 64
[training]
steps = 1
global_batch_tokens = 512
micro_batch_tokens = 512
threads = 1
[optimizer]
warmup_steps = 0
[checkpoint]
interval = 1
TOML
for i in $(seq 1 40); do printf 'ab ab a tab %d ab\n' "$i"; done > "$work/e.txt"
"$seqmesh" prep --tokenizer "$work/gpt2.json" --output "$work/e" "$work/e.txt" > /dev/null
"$seqmesh" prep --output "$work/eb" "$work/e.txt" > /dev/null   # the byte tokenizer
"$seqmesh" prep --tokenizer "$work/big.json" --output "$work/ebig" "$work/e.txt" > /dev/null
train() { "$seqmesh" train --config "$work/tiny.toml" "$@"; }
refused() {  # refused NAME EXPECTED_TEXT ARGS...: train fails with one line holding the text
  local name=$1 want=$2
  shift 2
  if train "$@" > "$work/$name.log" 2>&1; then fail "$name: train accepted it"; fi
  grep -q -- "$want" "$work/$name.log" || fail "$name: $(tail -3 "$work/$name.log")"
  echo "ok: $name: $(grep -- "$want" "$work/$name.log" | head -1 | cut -c1-160)"
}
refused vocab "outside model.vocab = 300" --data.path="\"$work/ebig\"" --checkpoint.dir="$work/r0"
train --data.path="\"$work/e\"" --checkpoint.dir="$work/run" > "$work/run.log" 2>&1 \
  || fail "train on the tokenizer's data: $(tail -3 "$work/run.log")"
model=$work/run/step-00000001
[[ -f $model/config.json ]] || fail "no HF directory at $model"
# The model directory ships no tokenizer: a byte dataset (vocab 259) fits a 300-id model...
train --init-from "$model" --data.path="\"$work/eb\"" --checkpoint.dir="$work/r1" \
  > "$work/r1.log" 2>&1 || fail "byte data under a 300-id model: $(tail -3 "$work/r1.log")"
# ...but 70,000 ids do not, and a model with 2,000 ids is not the byte tokenizer's.
refused init-vocab "has vocab_size 300" --init-from "$model" --data.path="\"$work/ebig\"" \
  --checkpoint.dir="$work/r2"
train --model.vocab=2000 --data.path="\"$work/eb\"" --checkpoint.dir="$work/run2k" \
  > "$work/run2k.log" 2>&1 || fail "train vocab 2000: $(tail -3 "$work/run2k.log")"
refused init-padded "has vocab_size 2000" --init-from "$work/run2k/step-00000001" \
  --data.path="\"$work/eb\"" --checkpoint.dir="$work/r3"
# With the tokenizer in the model directory, the file must be the dataset's.
cp "$work/gpt2.json" "$model/tokenizer.json"
train --init-from "$model" --data.path="\"$work/e\"" --checkpoint.dir="$work/r4" \
  > "$work/r4.log" 2>&1 || fail "the same tokenizer was refused: $(tail -3 "$work/r4.log")"
sed 's/"a b"/"b a"/' "$work/gpt2.json" > "$model/tokenizer.json"
py -c "import json,sys; d=json.load(open(sys.argv[1])); d['model']['vocab']['ba']=d['model']['vocab'].pop('ab'); json.dump(d, open(sys.argv[1],'w'))" "$model/tokenizer.json"
refused init-file "ships tokenizer.json" --init-from "$model" --data.path="\"$work/e\"" \
  --checkpoint.dir="$work/r5"
grep -q "seqmesh prep --tokenizer $model" "$work/init-file.log" || fail "the fix is not named"
# launch refuses it too, before any process starts.
if "$seqmesh" launch -n 2 --config "$work/tiny.toml" --init-from "$model" \
    --data.path="\"$work/e\"" --checkpoint.dir="$work/r6" > "$work/launch.log" 2>&1; then
  fail "launch accepted a model whose tokenizer is not the dataset's"
fi
grep -q "ships tokenizer.json" "$work/launch.log" || fail "launch: $(tail -3 "$work/launch.log")"
! grep -q "worker" "$work/launch.log" || fail "launch started workers: $(cat "$work/launch.log")"
echo "ok: launch -n 2 refuses it before starting a process"

# (6) Chat data (issue 18, item 3): prep --chat renders Llama 3's template (found in
# tokenizer_config.json) and writes a loss mask that trains only the assistant turns and their
# <|eot_id|>; train and launch -n 2 train on it with the same losses.
mkdir -p "$work/l3"
py "$files" make-llama3-chat "$work/l3"
cat > "$work/chat.jsonl" <<'JSONL'
{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
{"prompt": "ab", "completion": " cd "}
JSONL
"$seqmesh" prep --chat --tokenizer "$work/l3" --output "$work/chat" "$work/chat.jsonl" \
  > "$work/chat.log" || fail "prep --chat: $(cat "$work/chat.log")"
grep -q "llama3 chat format, 6 tokens trained on" "$work/chat.log" || fail "$(cat "$work/chat.log")"
py "$files" read "$work/chat" > "$work/chat.ids"
py "$files" read "$work/chat.loss_mask" > "$work/chat.mask"
# <|begin_of_text|> <|start_header_id|> u s e r <|end_header_id|> \n \n h i <|eot_id|>
# <|start_header_id|> a s s i s t a n t <|end_header_id|> \n \n y o <|eot_id|>
want_ids="[256,258,117,115,101,114,259,10,10,104,105,260,258,97,115,115,105,115,116,97,110,116,259,10,10,121,111,260]"
want_mask="[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,1,1]"
[[ $(sed -n 2p "$work/chat.ids") == "$want_ids" ]] || fail "chat ids: $(sed -n 2p "$work/chat.ids")"
[[ $(sed -n 2p "$work/chat.mask") == "$want_mask" ]] || fail "chat mask: $(sed -n 2p "$work/chat.mask")"
# A prompt/completion example is one user and one assistant turn (the completion trimmed).
[[ $(sed -n 3p "$work/chat.mask" | tr -cd 1 | wc -c) == 3 ]] || fail "completion mask: $(sed -n 3p "$work/chat.mask")"
[[ $(card "$work/chat.dataset.json" "c['loss_mask'], c['trained_tokens'], c['chat_format']") == \
   "(True, 6, 'llama3')" ]] || fail "chat card: $(cat "$work/chat.dataset.json")"
echo "ok: prep --chat: Llama 3 template from tokenizer_config.json, exact ids and loss mask"
# Bad chat input: one line naming the line and the fault.
printf '{"messages": [{"role": "assistant", "content": "x"}]}\n' > "$work/badchat.jsonl"
if "$seqmesh" prep --chat --tokenizer "$work/l3" --output "$work/bc" "$work/badchat.jsonl" \
    > "$work/bc.log" 2>&1; then fail "a conversation starting with the assistant was accepted"; fi
grep -q "badchat.jsonl' line 1: message 0 is a assistant turn where a user turn was expected" \
  "$work/bc.log" || fail "$(cat "$work/bc.log")"
if "$seqmesh" prep --chat --chat-template chatml --tokenizer "$work/l3" --output "$work/bc" \
    "$work/chat.jsonl" > "$work/bc.log" 2>&1; then fail "chatml without its tokens was accepted"; fi
grep -q "the chatml chat format needs the token '<|im_start|>'" "$work/bc.log" \
  || fail "$(cat "$work/bc.log")"
echo "ok: bad chat data refused: $(cat "$work/bc.log" | cut -c1-150)"
# Train on it: a world of one and launch -n 2 give the same losses (the workers read the mask
# and the coordinator's normalizer counts only trained targets).
py -c "
import json, random
random.seed(3)
words = ['alpha', 'beta', 'gamma', 'delta', 'omega']
for i in range(60):
    q = ' '.join(random.choice(words) for _ in range(random.randint(3, 30)))
    a = ' '.join(random.choice(words) for _ in range(random.randint(2, 40)))
    print(json.dumps({'messages': [{'role': 'system', 'content': 'be brief'},
                                   {'role': 'user', 'content': q},
                                   {'role': 'assistant', 'content': a}]}))" > "$work/sft.jsonl"
"$seqmesh" prep --chat --tokenizer "$work/l3" --output "$work/sft" "$work/sft.jsonl" > /dev/null
cat > "$work/chat.toml" <<TOML
[model]
vocab = 261
hidden = 32
layers = 2
heads = 4
kv_heads = 2
ffn = 64
[training]
steps = 3
global_batch_tokens = 2048
micro_batch_tokens = 512
threads = 1
[optimizer]
warmup_steps = 0
TOML
"$seqmesh" train --config "$work/chat.toml" --data.path="\"$work/sft\"" \
  --checkpoint.dir="$work/c1" > "$work/c1.log" 2>&1 || fail "train on chat data: $(tail -3 "$work/c1.log")"
"$seqmesh" launch -n 2 --config "$work/chat.toml" --data.path="\"$work/sft\"" \
  --checkpoint.dir="$work/c2" > "$work/c2.log" 2>&1 || fail "launch on chat data: $(tail -3 "$work/c2.log")"
losses() { sed -n 's/.*"loss": *\([-0-9.eE+]*\).*/\1/p' "$1"; }
paste <(losses "$work/c1/metrics.jsonl") <(losses "$work/c2/metrics.jsonl") > "$work/both"
[[ $(wc -l < "$work/both") -eq 3 ]] || fail "expected 3 steps from each: $(cat "$work/both")"
awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 2e-5 * $1) exit 1 }' "$work/both" \
  || fail "train and launch -n 2 losses differ on chat data: $(cat "$work/both")"
echo "ok: train and launch -n 2 on chat data: the same losses ($(head -1 "$work/both"))"
# The same tokens without the mask train every target: another loss (so both runs used the mask).
cp "$work/sft.bin" "$work/nomask.bin" && cp "$work/sft.idx" "$work/nomask.idx"
"$seqmesh" train --config "$work/chat.toml" --data.path="\"$work/nomask\"" --model.vocab=261 \
  --checkpoint.dir="$work/c3" > "$work/c3.log" 2>&1 || fail "train without mask: $(tail -3 "$work/c3.log")"
[[ $(losses "$work/c3/metrics.jsonl" | head -1) != $(losses "$work/c1/metrics.jsonl" | head -1) ]] \
  || fail "the loss mask changed nothing"
echo "ok: without the mask the loss is $(losses "$work/c3/metrics.jsonl" | head -1)"
