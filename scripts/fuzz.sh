#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz, clang with ASan and UBSan) into
# ${FUZZ_BUILD_DIR:-build-fuzz} and runs each for SECONDS (default 300; .ci/run gives 20) on its
# committed corpus, tests/fuzz/corpus/<name>, two at a time. New inputs go to a scratch corpus, not
# the committed one (scripts/fuzz.sh --merge folds them in, minimised). Fails when a harness
# crashes, leaks, times out or allocates more than 2 GiB; the input is kept as
# build-fuzz/artifacts/<name>/crash-*, and its reproduction command is printed.
#   scripts/fuzz.sh [SECONDS] [NAME...]    scripts/fuzz.sh --merge [NAME...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
merge=0
if [[ ${1:-} == --merge ]]; then merge=1; shift; fi
seconds=300
if [[ ${1:-} =~ ^[0-9]+$ ]]; then seconds=$1; shift; fi
names=("$@")
if ((${#names[@]} == 0)); then names=(json safetensors idx run_config manifest requests tiktoken hf_tokenizer); fi

if ! command -v clang++ > /dev/null; then
  echo "fuzz: clang++ not found: run scripts/install-deps.sh" >&2
  exit 1
fi
cmake -S "$root" -B "$build" -DSEQMESH_FUZZ=ON -DCMAKE_BUILD_TYPE=Fuzz \
  -DCMAKE_CXX_FLAGS_FUZZ="-O1 -g" -DCMAKE_CXX_COMPILER=clang++ > /dev/null
targets=()
for n in "${names[@]}"; do targets+=(--target "fuzz_$n"); done
if ! cmake --build "$build" -j"$(nproc)" "${targets[@]}" > "$build/build.log" 2>&1; then
  tail -30 "$build/build.log" >&2
  echo "fuzz: build failed (log: $build/build.log)" >&2
  exit 1
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
flags=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1)

run_one() {  # name
  local n=$1 corpus=$root/tests/fuzz/corpus/$1 art=$build/artifacts/$1 scratch=$build/corpus/$1
  mkdir -p "$art" "$scratch"
  if ((merge)); then
    "$build/tests/fuzz/fuzz_$n" -merge=1 "${flags[@]}" "$corpus" "$scratch" > "$build/$n.log" 2>&1
    echo "fuzz_$n: merged into $corpus ($(ls "$corpus" | wc -l) inputs)"
    return
  fi
  local status=0
  "$build/tests/fuzz/fuzz_$n" "${flags[@]}" -max_total_time="$seconds" -artifact_prefix="$art/" \
    "$scratch" "$corpus" > "$build/$n.log" 2>&1 || status=$?
  local runs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/$n.log" | tail -1)
  if ((status != 0)); then
    grep -E "ERROR|runtime error|deadly signal|Test unit written" "$build/$n.log" | head -5 >&2
    echo "fuzz_$n: FAILED after ${runs:-?} executions (log: $build/$n.log); reproduce:" \
      "$build/tests/fuzz/fuzz_$n $(ls -t "$art"/* 2>/dev/null | head -1)" >&2
    return 1
  fi
  echo "fuzz_$n: ${runs:-?} executions in ${seconds} s, 0 crashes" \
    "(corpus $(ls "$corpus" | wc -l) + $(ls "$scratch" | wc -l) new)"
}

failed=0
pids=()
for n in "${names[@]}"; do
  run_one "$n" & pids+=($!)
  if ((${#pids[@]} >= 2)); then wait "${pids[0]}" || failed=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
exit $failed
