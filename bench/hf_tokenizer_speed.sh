#!/usr/bin/env bash
# Encoding throughput of runtime/hf_tokenizer against Hugging Face's tokenizers library (npm
# tokenizers@0.23.2, its Node binding: the reference test's oracle) on the reference test's
# 1.7 MB corpus and its five tokenizer.json files (GPT-2, Llama 3, Qwen2 shaped from real
# vocabularies; Llama 2 and Mistral shaped from a vocabulary trained in the test). One thread
# each (RAYON_NUM_THREADS=1; the library's encode of one text runs on one thread anyway), the
# encode calls only (loading left out; the library's time includes its async call per document):
# 5 runs each, alternated, medians and their ratio.
#   bench/hf_tokenizer_speed.sh [BUILD_DIR]   (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$root/build}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
KEEP_FILES=$work "$root/tests/runtime/hf_tokenizer_ref_test.sh" \
  "$build/tests/runtime/tokenizer_tool" "$build/npm" > /dev/null
modules=$build/npm/node_modules
docs=("$work"/docs/*)
bytes=$(du -cb "${docs[@]}" | tail -1 | cut -f1)
export RAYON_NUM_THREADS=1 RAYON_RS_NUM_CPUS=1
for f in gpt2 llama3 qwen2 llama2 mistral; do
  for i in 1 2 3 4 5; do
    TOKENIZER_TIME=1 "$build/tests/runtime/tokenizer_tool" "$work/$f.json" "${docs[@]}" \
      2>> "$work/$f.ours" > /dev/null
    TOKENIZER_TIME=1 node "$root/tests/runtime/hf_tokenizer_ref.js" "$modules" "$work/$f.json" \
      "${docs[@]}" 2>> "$work/$f.ref" > /dev/null
  done
done
/usr/bin/python3 - "$work" "$bytes" <<'PY'
import statistics, sys
work, n = sys.argv[1], int(sys.argv[2])
for f in ("gpt2", "llama3", "qwen2", "llama2", "mistral"):
    med = {}
    for k in ("ours", "ref"):
        s = [float(l.split()[1]) for l in open(f"{work}/{f}.{k}") if l.startswith("encode_seconds")]
        med[k] = statistics.median(s)
    print(f"{f}: runtime/hf_tokenizer {n / med['ours'] / 1e6:.2f} MB/s, tokenizers@0.23.2 "
          f"{n / med['ref'] / 1e6:.2f} MB/s (medians of 5, {n} bytes): "
          f"ratio {med['ref'] / med['ours']:.2f}x")
PY
# `seqmesh prep --tokenizer` with the Llama 3 shaped file on 16 copies of the corpus (about 20 MB,
# so that loading the tokenizer, about 0.5 s, is a small part): 1 and 2 threads (loading,
# reading, tokenizing and writing included), 3 runs each, medians and their ratio.
mkdir -p "$work/big"
for k in $(seq 1 16); do cp -r "$work/docs" "$work/big/$k"; done
for i in 1 2 3; do
  for t in 1 2; do
    "$build/launch/seqmesh" prep --threads $t --tokenizer "$work/llama3.json" \
      --output "$work/prep$t" "$work/big" | sed -n "s/^prep_mb_per_s: \([0-9.]*\).*/$t \1/p" \
      >> "$work/prep"
  done
done
/usr/bin/python3 - "$work/prep" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    t, mb = line.split()
    runs.setdefault(int(t), []).append(float(mb))
m1, m2 = statistics.median(runs[1]), statistics.median(runs[2])
print(f"prep --tokenizer llama3.json: 1 thread {m1:.2f} MB/s, 2 threads {m2:.2f} MB/s "
      f"(medians of 3): ratio {m2 / m1:.2f}x")
PY
