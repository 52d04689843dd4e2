#!/usr/bin/env bash
# Configures and builds seqmesh into ${BUILD_DIR:-build} (Release, all cores): every target, or
# only the targets named as arguments (scripts/build.sh seqmesh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" -j"$(nproc)" "${targets[@]}"
