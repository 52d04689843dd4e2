#!/usr/bin/env bash
# A LoRA fine-tune from a Hugging Face Llama directory on chat data (issue 18, items 3, 4 and 6):
# a Llama 3 shaped source (BF16 weights, rope_scaling llama3, a Llama 3 chat tokenizer.json) and
# chat JSONL through `prep --chat` (a loss mask), then `train --init-from SRC` with [lora]:
#   - the checkpoints hold PEFT's files (adapter_config.json, adapter_model.safetensors with
#     PEFT's names and shapes) and no base weights; the optimizer state covers only adapters;
#   - --resume continues bit for bit (dropout masks included), and `launch -n 2` (ZeRO-1 over the
#     adapters) takes train's first step; offload.optimizer = "cpu" gives the same bits;
#   - `export --merge-lora` gives a complete Hugging Face directory: config.json and tokenizer
#     files byte-identical to the source, untargeted tensors bitwise the source's, and each
#     targeted weight BF16(W + (alpha / r) B A);
#   - an adapter of another configuration and an unknown target are refused in one line.
#   lora_finetune_test.sh SEQMESH
set -euo pipefail
seqmesh=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
files=$root/tests/launch/prep_tokenizer_files.py
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR
py() { /usr/bin/python3 "$@"; }

# Source directory: a Llama 3 chat tokenizer (261 ids) and chat data in both JSONL shapes.
src=$work/src
mkdir -p "$src"
py "$files" make-llama3-chat "$src"
py - "$work/chat.jsonl" <<'PY'
import json, random, sys
random.seed(1)
words = "the cat sat on a mat and then it ran to see the dog who was very happy today".split()
with open(sys.argv[1], "w") as f:
    for i in range(60):
        q = " ".join(random.choice(words) for _ in range(random.randint(3, 12)))
        a = " ".join(random.choice(words) for _ in range(random.randint(3, 20)))
        if i % 2:
            turns = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            f.write(json.dumps({"messages": turns}) + "\n")
        else:
            f.write(json.dumps({"prompt": q, "completion": a}) + "\n")
PY
"$seqmesh" prep --chat --tokenizer "$src" --output "$work/chat" "$work/chat.jsonl" \
  > "$work/prep.log" || fail "prep --chat: $(cat "$work/prep.log")"
[[ -f $work/chat.loss_mask.bin ]] || fail "prep --chat wrote no loss mask"

cat > "$work/tiny.toml" <<TOML
[model]
vocab = 261
hidden = 32
layers = 2
heads = 4
kv_heads = 2
ffn = 64
[training]
steps = 4
global_batch_tokens = 1024
micro_batch_tokens = 512
threads = 1
[optimizer]
warmup_steps = 0
lr = 1e-2
[checkpoint]
interval = 2
[metrics]
tensorboard = false
trace = false
TOML
train() { "$seqmesh" train --config "$work/tiny.toml" --data.path="\"$work/chat\"" "$@"; }
train --training.steps=1 --checkpoint.dir="$work/base" > "$work/base.log" 2>&1 \
  || fail "base: $(tail -3 "$work/base.log")"

# The base as BF16 under a Llama 3 config.json.
py - "$src" <<'PY'
import json, sys
src = sys.argv[1]
config = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 256, "eos_token_id": [257, 260], "head_dim": 8, "hidden_act": "silu",
    "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
    "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
    "pad_token_id": None, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 261,
}
with open(f"{src}/config.json", "w") as f:
    json.dump(config, f, indent=2)
PY
py "$files" to-bf16 "$work/base/step-00000001/model.safetensors" "$src/model.safetensors"

lora=(--init-from "$src" --lora.rank=4 --lora.alpha=8)
train "${lora[@]}" --lora.dropout=0.1 --checkpoint.dir="$work/a" > "$work/a.log" 2>&1 \
  || fail "LoRA train: $(tail -3 "$work/a.log")"
grep -q "(frozen; LoRA r = 4 trains 4096)" "$work/a.log" \
  || fail "the run does not say what it trains: $(grep model: "$work/a.log")"
ck=$work/a/step-00000004
[[ -f $ck/adapter_config.json && -f $ck/adapter_model.safetensors ]] || fail "$(ls "$ck")"
[[ ! -e $ck/model.safetensors ]] || fail "a LoRA checkpoint wrote the frozen base"
py - "$ck" "$src" <<'PY' || fail "the PEFT files are not PEFT's"
import json, os, re, struct, sys
ck, src = sys.argv[1], sys.argv[2]
def header(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return {k: v for k, v in json.loads(raw[8:8 + n]).items() if k != "__metadata__"}
c = json.load(open(f"{ck}/adapter_config.json"))
assert c["peft_type"] == "LORA" and c["r"] == 4 and c["lora_alpha"] == 8, c
assert c["lora_dropout"] == 0.1 and c["bias"] == "none", c
assert c["base_model_name_or_path"] == os.path.realpath(src), c["base_model_name_or_path"]
assert c["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                               "down_proj"], c
# PEFT's names and shapes: lora_A (r, in), lora_B (out, r).
shape = {"q_proj": (32, 32), "k_proj": (32, 16), "v_proj": (32, 16), "o_proj": (32, 32),
         "gate_proj": (32, 64), "up_proj": (32, 64), "down_proj": (64, 32)}
h = header(f"{ck}/adapter_model.safetensors")
want = {}
for l in range(2):
    for m, (i, o) in shape.items():
        part = "self_attn" if m[0] in "qkvo" else "mlp"
        p = f"base_model.model.model.layers.{l}.{part}.{m}"
        want[p + ".lora_A.weight"] = [4, i]
        want[p + ".lora_B.weight"] = [o, 4]
assert sorted(h) == sorted(want), sorted(set(h) ^ set(want))
for k, e in h.items():
    assert e["shape"] == want[k] and e["dtype"] == "F32", (k, e)
# AdamW's state exists for the adapters only (m and v of each).
opt = header(f"{ck}/optimizer-rank-00000.safetensors")
assert opt and all(".lora_A." in k or ".lora_B." in k for k in opt), sorted(opt)[:4]
assert len(opt) == 2 * len(want), len(opt)
PY
echo "ok: train --init-from with [lora]: PEFT's files, names and shapes; moments for adapters only"

# --resume from step 2 of the same run: step 4 bit for bit (the dropout masks follow the step).
cp -r "$work/a" "$work/b"
rm -rf "$work/b/step-00000004"
sed -i "s|$work/a|$work/b|" "$work/b/config.toml"
"$seqmesh" train --config "$work/b/config.toml" --resume > "$work/b.log" 2>&1 \
  || fail "--resume: $(tail -3 "$work/b.log")"
for f in adapter_model.safetensors optimizer-rank-00000.safetensors; do
  cmp -s "$ck/$f" "$work/b/step-00000004/$f" || fail "--resume: $f differs"
done
echo "ok: --resume of a LoRA run: adapters and moments bit for bit"

# export --merge-lora (the base from adapter_config.json): BF16(W + 2 B A) for targets.
"$seqmesh" export --merge-lora "$ck" --output "$work/merged" > "$work/m.log" 2>&1 \
  || fail "export --merge-lora: $(cat "$work/m.log")"
for f in config.json tokenizer.json tokenizer_config.json; do
  cmp -s "$src/$f" "$work/merged/$f" || fail "merged $f is not the source's"
done
py - "$src" "$ck" "$work/merged" <<'PY' || fail "the merged weights are not W + (alpha/r) B A"
import json, struct, sys
import numpy as np
src, ck, merged = sys.argv[1:]
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    out = {}
    for k, e in h.items():
        if k == "__metadata__":
            continue
        b, end = e["data_offsets"]
        dt = {"BF16": "<u2", "F32": "<f4"}[e["dtype"]]
        out[k] = (e["dtype"], np.frombuffer(raw[8 + n + b:8 + n + end], dtype=dt).reshape(e["shape"]))
    return out
base, adapter, out = tensors(f"{src}/model.safetensors"), tensors(f"{ck}/adapter_model.safetensors"), tensors(f"{merged}/model.safetensors")
assert sorted(base) == sorted(out)
widen = lambda u: (u.astype("<u4") << 16).view("<f4")
merged_count = 0
for name, (dtype, w) in base.items():
    dt, m = out[name]
    assert dt == "BF16", (name, dt)
    a = adapter.get("base_model.model." + name.replace(".weight", ".lora_A.weight"))
    if a is None:
        assert np.array_equal(w, m), name  # untargeted: the source's bits
        continue
    b = adapter["base_model.model." + name.replace(".weight", ".lora_B.weight")][1]
    want = widen(w).astype(np.float64) + 2.0 * (b.astype(np.float64) @ a[1].astype(np.float64))
    got = widen(m).astype(np.float64)
    # One rounding to BF16 of an fp32 sum: within half a BF16 ulp of the exact value, plus the
    # fp32 sum's own rounding (far below).
    ulp = np.ldexp(1.0, np.frexp(want)[1] - 8)  # BF16 keeps 8 significant bits
    assert np.all(np.abs(got - want) <= 0.5 * ulp * 1.01), (name, np.max(np.abs(got - want) / ulp))
    assert not np.array_equal(w, m), name  # the adapters moved the weight
    merged_count += 1
assert merged_count == 14, merged_count
PY
echo "ok: export --merge-lora: the source's config and tokenizer, BF16(W + (alpha/r) B A) for targets"

# Without dropout: launch -n 2 (ZeRO-1 over the adapters) takes train's first step, and the
# pinned-memory optimizer gives the in-memory run's bits.
train "${lora[@]}" --training.steps=2 --checkpoint.dir="$work/c" > "$work/c.log" 2>&1 \
  || fail "LoRA train without dropout: $(tail -3 "$work/c.log")"
train "${lora[@]}" --training.steps=2 --checkpoint.dir="$work/o" --offload.optimizer='"cpu"' \
  > "$work/o.log" 2>&1 || fail "LoRA with offload.optimizer = cpu: $(tail -3 "$work/o.log")"
cmp -s "$work/c/step-00000002/adapter_model.safetensors" \
  "$work/o/step-00000002/adapter_model.safetensors" || fail "offloaded optimizer: other adapters"
"$seqmesh" launch -n 2 --config "$work/tiny.toml" --data.path="\"$work/chat\"" "${lora[@]}" \
  --training.steps=2 --checkpoint.dir="$work/l" > "$work/l.log" 2>&1 \
  || fail "launch -n 2 with [lora]: $(tail -5 "$work/l.log")"
[[ -f $work/l/step-00000002/adapter_model.safetensors ]] || fail "launch: $(ls "$work/l"/step-*)"
py - "$work/c/metrics.jsonl" "$work/l/metrics.jsonl" <<'PY' || fail "launch's first step is not train's"
import json, sys
a, b = [json.loads(open(p).readline()) for p in sys.argv[1:]]
print(f"step 1: train loss {a['loss']!r} grad_norm {a['grad_norm']!r}; launch -n 2 loss "
      f"{b['loss']!r} grad_norm {b['grad_norm']!r}")
# The same plan's gradients summed over two ranks instead of one: fp32 reassociation only.
assert abs(a["loss"] - b["loss"]) <= 1e-6 * a["loss"], (a["loss"], b["loss"])
assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-5 * a["grad_norm"], (a, b)
PY
echo "ok: launch -n 2 and offload.optimizer = cpu with [lora]"

# training.precision = "bf16" (issue 18, item 5) under the same LoRA run: says once how bf16 runs
# on this CPU, and its first step is fp32's within bf16 rounding.
train "${lora[@]}" --training.steps=2 --training.precision='"bf16"' --checkpoint.dir="$work/h" \
  > "$work/h.log" 2>&1 || fail "bf16: $(tail -3 "$work/h.log")"
[[ $(grep -c "^precision: bf16" "$work/h.log") == 1 ]] || fail "bf16 line: $(cat "$work/h.log")"
grep "^precision: bf16" "$work/h.log"
py - "$work/c/metrics.jsonl" "$work/h/metrics.jsonl" <<'PY' || fail "bf16's first step is not fp32's"
import json, sys
a, b = [json.loads(open(p).readline()) for p in sys.argv[1:]]
print(f"step 1 loss: fp32 {a['loss']!r}, bf16 {b['loss']!r}")
# GEMM inputs rounded to 8 significant bits: the mean token loss moves by ~1e-4 relative.
assert a["loss"] != b["loss"] and abs(a["loss"] - b["loss"]) <= 2e-3 * a["loss"], (a, b)
PY
echo "ok: training.precision = bf16 with [lora]"

# Refusals: one line naming the problem.
if "$seqmesh" train --config "$work/b/config.toml" --resume --lora.rank=8 --training.steps=6 \
    > "$work/bad.log" 2>&1; then fail "a rank-4 adapter resumed at rank 8"; fi
grep -q "has r = 4 but lora.rank is 8" "$work/bad.log" || fail "$(tail -2 "$work/bad.log")"
if train "${lora[@]}" --lora.targets='["q_proj", "qkv_proj"]' --checkpoint.dir="$work/x" \
    > "$work/bad2.log" 2>&1; then fail "an unknown target was accepted"; fi
grep -q '"qkv_proj" is not a projection of a Llama layer' "$work/bad2.log" \
  || fail "$(tail -2 "$work/bad2.log")"
echo "ok: refusals name the field"
