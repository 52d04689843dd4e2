#!/usr/bin/env bash
# The layer rules (DESIGN.md section 2): the source tree passes scripts/check-layers.sh, and a
# copy with an include pointing up (runtime/ -> parallel/) or sideways (scheduler/ -> parallel/)
# fails it, naming each offending file and line.
set -euo pipefail
src=$1
check=$src/scripts/check-layers.sh
"$check" "$src" || { echo "FAIL: the source tree breaks the layer rules (above)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/runtime" "$tmp/scheduler" "$tmp/parallel"
printf '#include "runtime/tensor.h"\n#include "parallel/communicator.h"\n' > "$tmp/runtime/up.cc"
printf '#include "proto/step_plan.pb.h"\n\n#include "parallel/hdp_step.h"\n' > "$tmp/scheduler/side.h"
printf '#include "runtime/tensor.h"\n#include "proto/step_plan.pb.h"\n' > "$tmp/parallel/ok.cc"
if out=$("$check" "$tmp"); then
  echo "FAIL: includes that point up or sideways passed the check"; exit 1
fi
grep -q '^runtime/up.cc:2: runtime/ includes parallel/' <<< "$out" || { echo "FAIL: $out"; exit 1; }
grep -q '^scheduler/side.h:3: scheduler/ includes parallel/' <<< "$out" || { echo "FAIL: $out"; exit 1; }
if grep -q 'parallel/ok.cc' <<< "$out"; then echo "FAIL: allowed includes flagged: $out"; exit 1; fi
[ "$(wc -l <<< "$out")" -eq 2 ] || { echo "FAIL: expected 2 lines: $out"; exit 1; }
echo "PASS"
