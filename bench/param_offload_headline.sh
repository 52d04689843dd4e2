#!/usr/bin/env bash
# bench/param_offload_headline: fine-tune a model whose whole training state (fp32 weights,
# gradients, AdamW's master weights are the weights on the CPU, m and v: 16 B per parameter) is
# at least 6x the memory the kernel lets the run use (issue 15, item 1): weights, optimizer state
# and gradients on SSD (offload.parameters = offload.optimizer = "nvme").
#
#   bench/param_offload_headline.sh [build_dir] [steps]
#
# examples/offload.toml's data and schedule with a deeper model (LAYERS x hidden 768, ffn 2048,
# default 32 layers: 201M parameters, 3.0 GiB of state) under a memory cgroup limit of LIMIT_MIB
# (default 384 MiB):
#   reference       nothing offloaded, no limit: the in-memory run;
#   refused         nothing offloaded, under the limit: refused by pre-flight or killed;
#   optimizer-only  offload.optimizer = "nvme" alone, under the limit: refused or killed (the
#                   weights alone are twice the limit);
#   offloaded       parameters and optimizer on SSD, under the limit.
# The offloaded run's losses and final checkpoint (model.safetensors and the optimizer part)
# must equal the reference's bit for bit. Prints the limit, the cgroup's peak usage, tokens/s of
# both and their ratio, and the offloaded step against max(I/O time, compute time): compute is
# the reference's step, I/O the step's bytes (weights, optimizer state, gradients) over the SSD
# engine's own read and write bandwidths measured here first (bench/ssd_engine, 1 GiB). Medians
# over the steps after the first. Needs root (or a delegated memory cgroup); OFFLOAD_DIR sets
# offload.nvme_path (default /var/tmp).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
steps=${2:-20}
seqmesh=$build/launch/seqmesh
limit_mib=${LIMIT_MIB:-384}
layers=${LAYERS:-32}
dir=${OFFLOAD_DIR:-/var/tmp}
work=$(mktemp -d /var/tmp/seqmesh-params-XXXXXX)

source "$root/bench/memory_limit.sh"
cleanup() {
  memory_limit_close
  [[ -n "${KEEP:-}" ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
memory_limit_open seqmesh-params "$limit_mib"

echo "SSD engine bandwidth in $dir ..."
"$build/bench/ssd_engine" --dir "$dir" --size-mib 1024 > "$work/ssd.txt"
"$seqmesh" synth --task passkey --lengths byted-like --count 3000 --max-length 128 \
  --min-length 96 --seed 3 --output "$work/data" > /dev/null
common=(--config "$root/examples/offload.toml" --training.steps="$steps"
        --model.layers="$layers" --model.hidden=768 --model.heads=12 --model.kv_heads=4
        --model.ffn=2048 --data.path="\"$work/data\"" --offload.nvme_path="\"$dir\"")
run() {  # name, command...
  local name=$1; shift
  "$@" "${common[@]}" --checkpoint.dir="\"$work/$name\"" > "$work/$name.log" 2>&1
}
none=(--offload.optimizer='"none"' --offload.parameters='"none"')
both=(--offload.optimizer='"nvme"' --offload.parameters='"nvme"')

echo "reference (no offload, no limit) ..."
run reference "$seqmesh" train "${none[@]}"
set +e
echo "refused? (no offload, $limit_mib MiB) ..."
run refused limited "$seqmesh" train "${none[@]}"
refused_rc=$?
echo "refused? (optimizer offloaded only, $limit_mib MiB) ..."
run optimizer-only limited "$seqmesh" train --offload.optimizer='"nvme"' \
  --offload.parameters='"none"'
optimizer_rc=$?
set -e
memory_limit_reset_peak
echo "offloaded (parameters and optimizer on SSD, $limit_mib MiB) ..."
run offloaded limited "$seqmesh" train "${both[@]}"
peak=$(cat "$peak_file")

/usr/bin/python3 - "$work" "$refused_rc" "$optimizer_rc" "$peak" "$limit_mib" <<'PY'
import glob, hashlib, json, re, statistics, sys
work, refused_rc, optimizer_rc, peak, limit_mib = sys.argv[1], *map(int, sys.argv[2:])
gib, mib = 2**30, 2**20
records = lambda n: [json.loads(l) for l in open(f"{work}/{n}/metrics.jsonl")]
def digest(n, pattern):
    (p,) = glob.glob(f"{work}/{n}/step-*/{pattern}")
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
ref, off = records("reference"), records("offloaded")
ssd = open(f"{work}/ssd.txt").read()
write_gibps = float(re.search(r"engine write bs\S* qd=\S+ gibps=(\S+)", ssd).group(1))
read_gibps = float(re.search(r"engine read bs\S* qd=\S+ gibps=(\S+)", ssd).group(1))
params = next(int(l.split()[1]) for l in open(f"{work}/reference.log") if l.startswith("model: "))
state = 16 * params
same_losses = [r["loss"] for r in ref] == [r["loss"] for r in off] and len(ref) == len(off)
same_files = all(digest("reference", p) == digest("offloaded", p)
                 for p in ("model.safetensors", "optimizer-rank-*.safetensors"))
med = lambda rs, k: statistics.median(r[k] for r in rs[1:])
read = med(off, "offload_read_bytes") + med(off, "parameter_read_bytes")
written = med(off, "offload_written_bytes") + med(off, "parameter_written_bytes")
io_ms = (read / (read_gibps * gib) + written / (write_gibps * gib)) * 1e3
compute_ms = med(ref, "step_ms")
bound_ms = max(io_ms, compute_ms)
last = lambda n: open(f"{work}/{n}.log").read().strip().splitlines()[-1][:240]
print(f"model: {params} parameters; training state {state / gib:.2f} GiB (16 B/param)")
print(f"limit: {limit_mib} MiB (cgroup); state / limit = {state / (limit_mib * mib):.2f}")
print(f"no offload under the limit: exit {refused_rc}: {last('refused')}")
print(f"optimizer offloaded only, under the limit: exit {optimizer_rc}: {last('optimizer-only')}")
print(f"offloaded under the limit: peak cgroup usage {peak / mib:.0f} MiB, "
      f"VmHWM {max(r['vm_hwm_mib'] for r in off):.0f} MiB, VmLck {off[-1]['vm_lck_mib']:.0f} MiB")
print(f"losses bitwise equal: {same_losses}; final checkpoint files bitwise equal: {same_files}")
print(f"SSD engine: write {write_gibps:.2f} GiB/s, read {read_gibps:.2f} GiB/s")
print(f"per step: {read / gib:.2f} GiB read, {written / gib:.2f} GiB written -> I/O {io_ms:.0f} ms; "
      f"compute (in-memory step) {compute_ms:.0f} ms; offloaded step {med(off, 'step_ms'):.0f} ms "
      f"(parameter reads waited {med(off, 'parameter_wait_ms'):.0f} ms)")
tps = lambda rs: med(rs, "tok_per_s")
print(f"tokens/s: in memory {tps(ref):.1f}, offloaded {tps(off):.1f}, ratio {tps(off) / tps(ref):.3f}; "
      f"offloaded step / max(I/O, compute) = {med(off, 'step_ms') / bound_ms:.2f}")
ok = (refused_rc != 0 and optimizer_rc != 0 and same_losses and same_files
      and peak <= limit_mib * mib and state >= 6 * limit_mib * mib)
print("headline:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
