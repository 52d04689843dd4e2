#!/usr/bin/env bash
# bench/activation_offload: one long sequence on one rank whose activations are several times
# the memory the kernel lets the run use trains with its checkpointed layers' inputs on SSD
# (issue 15, item 2).
#
#   bench/activation_offload.sh [build_dir] [steps]
#
# A deep, narrow byte-level Llama (LAYERS layers, hidden 128, default 32) on sequences of LENGTH
# tokens (default 4096), one per step, under a memory cgroup limit of LIMIT_MIB (default 320):
#   reference   every layer's activations kept, no limit: the in-memory run at LENGTH;
#   checkpoint  checkpoint_activations = true in memory, no limit (what checkpointing alone holds);
#   refused     the reference's config under the limit: refused by pre-flight or killed;
#   offloaded   checkpoint_activations = true, offload.activations = "nvme", under the limit;
#   fits        the reference's config at SHORT tokens under the limit: the
#               in-memory run at a length that fits (default 512).
# The offloaded run's losses and final checkpoint must equal the reference's bit for bit. Prints
# each run's peak RSS (GNU time's maximum resident set), the cgroup's peak for the offloaded run,
# the activations' bytes (kept, checkpointed, offloaded) and tokens/s with their ratios (medians
# over the steps after the first). Needs root (or a delegated memory cgroup); OFFLOAD_DIR sets
# offload.nvme_path (default /var/tmp: a disk file system, not tmpfs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
steps=${2:-3}
seqmesh=$build/launch/seqmesh
limit_mib=${LIMIT_MIB:-320}
length=${LENGTH:-4096}
short=${SHORT:-512}
layers=${LAYERS:-32}
work=$(mktemp -d /var/tmp/seqmesh-actoffload-XXXXXX)

source "$root/bench/memory_limit.sh"
cleanup() {
  memory_limit_close
  [[ -n "${KEEP:-}" ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
memory_limit_open seqmesh-actoffload "$limit_mib"

# Documents of LENGTH - 64 .. LENGTH tokens: every step is one whole sequence, one micro-batch.
"$seqmesh" synth --task passkey --lengths byted-like --count 64 --max-length "$length" \
  --min-length $((length - 64)) --seed 5 --output "$work/data" > /dev/null
cat > "$work/run.toml" <<TOML
[model]
vocab = 259
hidden = 128
layers = $layers
heads = 2
kv_heads = 2
ffn = 256
[training]
steps = $steps
log_interval = 1
threads = 2
seed = 7
[optimizer]
lr = 1e-3
min_lr = 1e-3
warmup_steps = 0
[data]
path = "$work/data"
[checkpoint]
interval = 0
keep = 1
TOML

run() {  # name, tokens, [limited]
  local name=$1 tokens=$2 wrap=()
  [[ ${3:-} == limited ]] && wrap=(limited)
  "${wrap[@]}" /usr/bin/time -f '%M' -o "$work/$name.rss" "$seqmesh" train \
    --config "$work/run.toml" --training.global_batch_tokens="$tokens" \
    --training.micro_batch_tokens="$tokens" --checkpoint.dir="\"$work/$name\"" "${extra[@]}" \
    > "$work/$name.log" 2>&1
}
offload=(--training.checkpoint_activations=true --offload.activations='"nvme"'
         --offload.nvme_path="\"${OFFLOAD_DIR:-/var/tmp}\"")

echo "reference (activations kept, $length tokens, no limit) ..."
extra=(); run reference "$length"
echo "checkpoint (recomputed, inputs in memory, no limit) ..."
extra=(--training.checkpoint_activations=true); run checkpoint "$length"
echo "refused? (activations kept, $limit_mib MiB) ..."
set +e
extra=(); run refused "$length" limited
refused_rc=$?
set -e
memory_limit_reset_peak
echo "offloaded (inputs on SSD, $limit_mib MiB) ..."
extra=("${offload[@]}"); run offloaded "$length" limited || { tail -5 "$work/offloaded.log"; exit 1; }
peak=$(cat "$peak_file")
echo "fits (activations kept, $short tokens, $limit_mib MiB) ..."
extra=(); run fits "$short" limited || { tail -3 "$work/fits.log"; exit 1; }

/usr/bin/python3 - "$work" "$refused_rc" "$peak" "$limit_mib" "$length" "$short" "$layers" <<'PY'
import glob, hashlib, json, statistics, sys
work, refused_rc, peak, limit_mib, length, short, layers = sys.argv[1], int(sys.argv[2]), int(
    sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
mib = 2**20
records = lambda n: [json.loads(l) for l in open(f"{work}/{n}/metrics.jsonl")]
rss = lambda n: int(open(f"{work}/{n}.rss").read().split()[-1]) * 1024
def digest(n):
    (p,) = glob.glob(f"{work}/{n}/step-*/model.safetensors")
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
tps = lambda rs: statistics.median(r["tok_per_s"] for r in rs[1:])
ref, ck, off, fit = (records(n) for n in ("reference", "checkpoint", "offloaded", "fits"))
# The model's exact activation bytes at `length` (runtime/model.cc, 64-byte-aligned tensors):
# per layer and token xn1, qkv, attn, x2, xn2 (hidden 128, 2 heads of 64), rstd1, rstd2, lse
# (2 heads), gate_up, h (ffn 256), f32; a layer's input is 128 x 4 B per token.
per_token = 4 * (128 + 1 + 3 * 128 + 128 + 2 + 128 + 128 + 1 + 2 * 256 + 256)
kept = layers * (per_token + 512) * length
inputs = layers * 512 * length
print(f"model: {layers} layers, hidden 128, ffn 256; one sequence of {length} tokens per step")
print(f"activations at {length} tokens: kept {kept / mib:.0f} MiB (limit x {kept / (limit_mib * mib):.1f}); "
      f"checkpointed inputs {inputs / mib:.0f} MiB + one layer's set {per_token * length / mib:.0f} MiB")
print(f"limit: {limit_mib} MiB (cgroup); kept activations under it: exit {refused_rc}: "
      f"{open(f'{work}/refused.log').read().strip().splitlines()[-1][:200]}")
print(f"peak RSS: reference {rss('reference') / mib:.0f} MiB, checkpoint {rss('checkpoint') / mib:.0f} MiB, "
      f"offloaded {rss('offloaded') / mib:.0f} MiB (cgroup peak {peak / mib:.0f} MiB), "
      f"fits ({short} tokens, kept) {rss('fits') / mib:.0f} MiB")
print(f"ratios: offloaded / reference {rss('offloaded') / rss('reference'):.3f}, "
      f"offloaded / checkpoint {rss('offloaded') / rss('checkpoint'):.3f}, "
      f"offloaded / fits {rss('offloaded') / rss('fits'):.2f} at {length / short:.0f}x the tokens")
same = [r["loss"] for r in ref] == [r["loss"] for r in off] and digest("reference") == digest("offloaded")
print(f"losses and final parameters bitwise equal to the reference: {same}")
print(f"tokens/s: reference {tps(ref):.0f}, checkpoint {tps(ck):.0f} ({tps(ck) / tps(ref):.2f}), "
      f"offloaded {tps(off):.0f} ({tps(off) / tps(ref):.2f} of reference, {tps(off) / tps(ck):.2f} of checkpoint)")
ok = refused_rc != 0 and same and peak <= limit_mib * mib
print("activation offload:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
