#!/usr/bin/env bash
# A faithful Hugging Face round trip through `seqmesh train --init-from` (issue 18, item 6): a
# Llama 3.2 shaped directory (BF16 weights, rope_scaling llama3, bos/eos ids,
# max_position_embeddings, an unknown key, tokenizer and generation files) is trained for a step,
# and every checkpoint written from it is a complete Hugging Face directory:
#   - config.json has every member of the source with the same value and number text;
#   - model.safetensors is BF16 (the dtype read), or F32 with checkpoint.export_dtype = "float32"
#     (and torch_dtype says so);
#   - tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json are
#     byte-identical copies, listed in the manifest;
#   - the same after --resume (the source is then the checkpoint resumed) and under launch -n 2
#     (the workers get the rope scaling through the resolved config).
#   hf_round_trip_test.sh SEQMESH
set -euo pipefail
seqmesh=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
files=$root/tests/launch/prep_tokenizer_files.py
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR
py() { /usr/bin/python3 "$@"; }

py "$files" make-bytelevel "$work/gpt2.json" 300
# Sequences of 256 tokens, so that the scaled frequencies change the numbers measurably.
for i in $(seq 1 6); do
  for j in $(seq 1 25); do printf 'ab ab a tab %d ab ' "$((i * j))"; done
  echo
done > "$work/e.txt"
"$seqmesh" prep --tokenizer "$work/gpt2.json" --max-length 256 --output "$work/e" "$work/e.txt" \
  > /dev/null
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
[metrics]
tensorboard = false
trace = false
TOML
train() { "$seqmesh" train --config "$work/tiny.toml" --data.path="\"$work/e\"" "$@"; }
train --checkpoint.dir="$work/base" > "$work/base.log" 2>&1 || fail "base: $(tail -3 "$work/base.log")"

# The source: base's weights as BF16 under a Llama 3.2 config.json, with the tokenizer's files.
src=$work/src
mkdir -p "$src"
cp "$work/gpt2.json" "$src/tokenizer.json"
printf '{"bos_token": null, "eos_token": "<|endoftext|>", "model_max_length": 131072}\n' \
  > "$src/tokenizer_config.json"
printf '{"eos_token": "<|endoftext|>"}\n' > "$src/special_tokens_map.json"
printf '{\n  "bos_token_id": 128000,\n  "do_sample": true,\n  "temperature": 0.6,\n  "top_p": 0.9\n}\n' \
  > "$src/generation_config.json"
py - "$src" <<'PY'
import json, sys
src = sys.argv[1]
config = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 8,
    "hidden_act": "silu", "hidden_size": 32, "initializer_range": 0.02,
    "intermediate_size": 64, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 1,
    "num_key_value_heads": 2, "pad_token_id": None, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 300,
    "seqmesh_test_unknown": {"kept": [1.5, 2e-3]},
}
with open(f"{src}/config.json", "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
PY
py "$files" to-bf16 "$work/base/step-00000001/model.safetensors" "$src/model.safetensors"

# check DIR DTYPE TORCH_DTYPE: DIR is a complete Hugging Face directory of src's model.
check() {
  local dir=$1 dtype=$2 torch_dtype=$3
  py - "$src" "$dir" "$dtype" "$torch_dtype" <<'PY' || fail "$dir is not src's model directory"
import json, re, struct, sys
src, dir, dtype, torch_dtype = sys.argv[1:]
a = json.load(open(f"{src}/config.json"))
b = json.load(open(f"{dir}/config.json"))
a["torch_dtype"] = torch_dtype
assert list(a) == list(b), (list(a), list(b))
for k in a:
    assert a[k] == b[k], (k, a[k], b[k])
text = open(f"{dir}/config.json").read()
for member in ['"rms_norm_eps": 1e-05', '"rope_theta": 500000.0', '"factor": 32.0',
               '"max_position_embeddings": 131072', '"rope_type": "llama3"']:
    assert member in text, (member, text)
raw = open(f"{dir}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
dtypes = {e["dtype"] for k, e in header.items() if k != "__metadata__"}
assert dtypes == {dtype}, dtypes
manifest = open(f"{dir}/manifest.json").read()
for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "generation_config.json"]:
    assert open(f"{src}/{name}", "rb").read() == open(f"{dir}/{name}", "rb").read(), name
    assert f'"{name}"' in manifest, (name, manifest)
PY
}

train --init-from "$src" --checkpoint.dir="$work/r1" > "$work/r1.log" 2>&1 \
  || fail "train --init-from: $(tail -3 "$work/r1.log")"
check "$work/r1/step-00000001" BF16 bfloat16
echo "ok: train --init-from: config.json member for member, BF16 weights, tokenizer files"

train --init-from "$src" --checkpoint.dir="$work/r2" --checkpoint.export_dtype='"float32"' \
  > "$work/r2.log" 2>&1 || fail "export_dtype float32: $(tail -3 "$work/r2.log")"
check "$work/r2/step-00000001" F32 float32
echo "ok: checkpoint.export_dtype = \"float32\": F32 weights, torch_dtype float32"

# Resumed from the run's own config.toml (which carries the rope scaling), without --init-from.
grep -q "rope_scaling = 'llama3'\|rope_scaling = \"llama3\"" "$work/r1/config.toml" \
  || fail "config.toml has no rope_scaling: $(grep rope "$work/r1/config.toml")"
"$seqmesh" train --config "$work/r1/config.toml" --resume --training.steps=2 > "$work/r1b.log" 2>&1 \
  || fail "--resume: $(tail -3 "$work/r1b.log")"
check "$work/r1/step-00000002" BF16 bfloat16
echo "ok: --resume: the checkpoint resumed is the source"

"$seqmesh" launch -n 2 --config "$work/tiny.toml" --data.path="\"$work/e\"" --init-from "$src" \
  --checkpoint.dir="$work/l1" > "$work/l1.log" 2>&1 || fail "launch: $(tail -5 "$work/l1.log")"
check "$work/l1/step-00000001" BF16 bfloat16
# The workers computed with the scaled tables (the coordinator's resolved config carries them):
# their first step's gradient norm is train's, and unlike that of the same model without
# rope_scaling (with random-like weights attention is nearly uniform, so the difference is small,
# about 1e-5 relative, but far above the 1e-7 between train and launch).
mkdir -p "$work/plain"
cp "$src"/* "$work/plain/"
py -c "import json,sys; c=json.load(open(sys.argv[1])); c['rope_scaling']=None; json.dump(c, open(sys.argv[1],'w'))" \
  "$work/plain/config.json"
train --init-from "$work/plain" --checkpoint.dir="$work/p1" > "$work/p1.log" 2>&1 \
  || fail "train without rope_scaling: $(tail -3 "$work/p1.log")"
py - "$work/r1/metrics.jsonl" "$work/l1/metrics.jsonl" "$work/p1/metrics.jsonl" <<'PY' \
  || fail "launch's first step is not train's"
import json, sys
scaled, launched, plain = [json.loads(open(p).readline())["grad_norm"] for p in sys.argv[1:]]
print(f"grad_norm of step 1: train {scaled!r}, launch {launched!r}, no rope_scaling {plain!r}")
assert abs(scaled - launched) <= 1e-6 * scaled, (scaled, launched)
assert abs(scaled - plain) > 4e-6 * scaled, (scaled, plain)
PY
echo "ok: launch -n 2 --init-from: the same directory and train's first step, which rope_scaling changes"
