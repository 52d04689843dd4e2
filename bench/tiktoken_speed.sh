#!/usr/bin/env bash
# Encoding throughput of runtime/tiktoken against npm's gpt-tokenizer (tiktoken's JavaScript
# port, the test's reference) on the tokenizer test's 1 MB corpus, one thread each, the encode
# calls only (loading the ranks left out): 5 runs each, alternated, medians and their ratio.
#   bench/tiktoken_speed.sh [BUILD_DIR] [ENCODING]   (defaults: build, cl100k_base)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$root/build}")
enc=${2:-cl100k_base}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
KEEP_CORPUS=$work/docs "$root/tests/runtime/tiktoken_ref_test.sh" \
  "$build/tests/runtime/tokenizer_tool" "$build/npm" > /dev/null
modules=$build/npm/node_modules
docs=("$work"/docs/*)
bytes=$(du -cb "${docs[@]}" | tail -1 | cut -f1)
for i in 1 2 3 4 5; do
  TOKENIZER_TIME=1 "$build/tests/runtime/tokenizer_tool" "$modules/gpt-tokenizer/data/$enc.tiktoken" \
    "${docs[@]}" 2>> "$work/ours" > /dev/null
  TOKENIZER_TIME=1 node "$root/tests/runtime/tiktoken_ref.js" "$modules" "$enc" "${docs[@]}" \
    2>> "$work/ref" > /dev/null
done
/usr/bin/python3 - "$work" "$bytes" "$enc" <<'PY'
import statistics, sys
work, n, enc = sys.argv[1], int(sys.argv[2]), sys.argv[3]
med = {}
for k in ("ours", "ref"):
    s = [float(l.split()[1]) for l in open(f"{work}/{k}") if l.startswith("encode_seconds")]
    med[k] = statistics.median(s)
    print(f"{k}: {[round(n / x / 1e6, 2) for x in s]} MB/s, median {n / med[k] / 1e6:.2f} MB/s")
print(f"{enc}, {n} bytes: runtime/tiktoken / gpt-tokenizer = {med['ref'] / med['ours']:.2f}x")
PY
