#!/usr/bin/env bash
# bench/offload_headline: train a model whose training state is about twice the memory the
# kernel lets it use (issue 14's headline). examples/offload.toml's 113M-parameter Llama holds
# 16 bytes per parameter of training state (fp32 weights, gradients, AdamW's m and v: 1.69 GiB);
# the run gets a memory cgroup limit of LIMIT_MIB (default 850 MiB, so state/limit = 2.03).
#
#   bench/offload_headline.sh [build_dir] [steps]
#
# Three runs on the same data and config:
#   reference   offload.optimizer = "none", no limit: the in-memory run;
#   refused     offload.optimizer = "none" under the limit: must be refused (pre-flight names the
#               memory) or killed (out of memory);
#   offloaded   offload.optimizer = "nvme" under the limit.
# The offloaded run's losses (metrics.jsonl) and final checkpoint (model.safetensors and the
# optimizer part) must equal the reference's bit for bit. Prints the limit, the cgroup's peak
# usage, tokens/s of both and their ratio (medians over the steps after the first).
#
# The limit: cgroup v1's memory controller (memory.limit_in_bytes; peak: memory.max_usage_in_bytes)
# or cgroup v2 (memory.max; peak: memory.peak), in a child of this shell's own memory cgroup,
# removed at exit. Needs root (or a delegated cgroup). OFFLOAD_DIR sets offload.nvme_path
# (default /var/tmp: a disk file system, not tmpfs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
steps=${2:-20}
seqmesh=$build/launch/seqmesh
limit_mib=${LIMIT_MIB:-850}
work=$(mktemp -d /var/tmp/seqmesh-headline-XXXXXX)

source "$root/bench/memory_limit.sh"
cleanup() {
  memory_limit_close
  [[ -n "${KEEP:-}" ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
memory_limit_open seqmesh-headline "$limit_mib"

"$seqmesh" synth --task passkey --lengths byted-like --count 3000 --max-length 128 \
  --min-length 96 --seed 3 --output "$work/data" > /dev/null
common=(--config "$root/examples/offload.toml" --training.steps="$steps"
        --data.path="\"$work/data\"" --offload.nvme_path="\"${OFFLOAD_DIR:-/var/tmp}\"")

run() {  # name, command...
  local name=$1; shift
  "$@" "${common[@]}" --checkpoint.dir="\"$work/$name\"" > "$work/$name.log" 2>&1
}

echo "reference (no offload, no limit) ..."
run reference "$seqmesh" train --offload.optimizer='"none"'
echo "refused? (no offload, $limit_mib MiB) ..."
set +e
run refused limited "$seqmesh" train --offload.optimizer='"none"'
refused_rc=$?
set -e
memory_limit_reset_peak
echo "offloaded (nvme, $limit_mib MiB) ..."
run offloaded limited "$seqmesh" train --offload.optimizer='"nvme"'
peak=$(cat "$peak_file")

# The results, with Debian's python3 for the JSON.
/usr/bin/python3 - "$work" "$refused_rc" "$peak" "$limit_mib" <<'PY'
import hashlib, json, statistics, sys, glob, os
work, refused_rc, peak, limit_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def records(name):
    return [json.loads(l) for l in open(f"{work}/{name}/metrics.jsonl")]
def digest(name, pattern):
    (path,) = glob.glob(f"{work}/{name}/step-*/{pattern}")
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
ref, off = records("reference"), records("offloaded")
losses_equal = [r["loss"] for r in ref] == [r["loss"] for r in off] and len(ref) == len(off)
files_equal = all(digest("reference", p) == digest("offloaded", p)
                  for p in ("model.safetensors", "optimizer-rank-*.safetensors"))
params = None
for line in open(f"{work}/reference.log"):
    if line.startswith("model: "):
        params = int(line.split()[1])
state = 16 * params
tps = lambda rs: statistics.median(r["tok_per_s"] for r in rs[1:])
last = open(f"{work}/refused.log").read().strip().splitlines()[-1]
print(f"model: {params} parameters; training state {state / 2**30:.2f} GiB (16 B/param)")
print(f"limit: {limit_mib} MiB; state / limit = {state / (limit_mib << 20):.2f}")
print(f"no offload under the limit: exit {refused_rc}: {last[:300]}")
print(f"offloaded under the limit: peak cgroup usage {peak / 2**20:.0f} MiB, "
      f"VmHWM {max(r['vm_hwm_mib'] for r in off):.0f} MiB, VmLck {off[-1]['vm_lck_mib']:.0f} MiB")
print(f"losses bitwise equal: {losses_equal}; final checkpoint files bitwise equal: {files_equal}")
print(f"tokens/s: in memory {tps(ref):.1f}, offloaded {tps(off):.1f}, ratio {tps(off) / tps(ref):.2f}")
print(f"offloaded I/O per step: {statistics.median(r['offload_read_bytes'] for r in off[1:]) / 2**30:.2f} GiB in, "
      f"{statistics.median(r['offload_written_bytes'] for r in off[1:]) / 2**30:.2f} GiB out, "
      f"{statistics.median(r['offload_gib_per_s'] for r in off[1:]):.2f} GiB/s, "
      f"overlap {statistics.median(r['offload_overlap'] for r in off[1:]):.2f}")
ok = refused_rc != 0 and losses_equal and files_equal and peak <= limit_mib << 20
print("headline:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
