#!/usr/bin/env bash
# Installs what is missing, builds, runs every test with CTest, then the fuzzers (tests/fuzz).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build=${BUILD_DIR:-$root/build}
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
# The libFuzzer harnesses, 20 s each on their committed corpora (scripts/fuzz.sh runs longer).
"$root/scripts/fuzz.sh" "${FUZZ_SECONDS:-20}"
