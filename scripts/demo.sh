#!/usr/bin/env bash
# The main job: installs what is missing, builds, gathers the text this Debian machine already
# has, tokenizes it (seqmesh prep, documents cut at 4,096 tokens) and trains a small byte-level
# Llama on it with `seqmesh launch -n 4` (examples/hdp.toml): a coordinator plans every step on the
# dynamic mesh and 4 worker processes (mpirun) train, printing the loss as it falls; then
# `seqmesh report` charts the run and `seqmesh trace merge` puts its ranks' traces together.
# Extra arguments go to `seqmesh launch` (for example --training.steps=100).
# `DEMO=train scripts/demo.sh` runs the single-process trainer on examples/text.toml instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
scripts/build.sh seqmesh  # only what the demo runs (scripts/test.sh builds the tests)
build=${BUILD_DIR:-$root/build}
if [ ! -f data/example/data.idx ] || [ ! -f data/example/hdp.idx ]; then
  [ -d data/example/text ] || scripts/gather-text.sh data/example/text
  "$build/launch/seqmesh" prep --output data/example/data data/example/text
  "$build/launch/seqmesh" prep --max-length 4096 --output data/example/hdp data/example/text
fi
if [ "${DEMO:-launch}" = train ]; then
  rm -rf runs/text
  exec "$build/launch/seqmesh" train --config examples/text.toml "$@"
fi
rm -rf runs/hdp
export OMP_NUM_THREADS=1
"$build/launch/seqmesh" launch -n 4 --config examples/hdp.toml "$@"
# What the run did: its summary and charts (runs/hdp/report/), and its ranks' traces on one
# timeline (runs/hdp/trace/merged.json, for https://ui.perfetto.dev).
run_dir=runs/hdp
for a in "$@"; do
  case "$a" in --checkpoint.dir=*) run_dir=${a#--checkpoint.dir=}; run_dir=${run_dir//\"/} ;; esac
done
"$build/launch/seqmesh" report "$run_dir"
"$build/launch/seqmesh" trace merge "$run_dir"
