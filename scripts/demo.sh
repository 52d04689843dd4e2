#!/usr/bin/env bash
# The main job: installs what is missing, builds, gathers the text this Debian machine already
# has, tokenizes it (seqmesh prep) and trains a small byte-level Llama on it (seqmesh train,
# examples/text.toml), printing the loss and the validation loss as they fall.
# Extra arguments go to `seqmesh train` (for example --training.steps=100).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
scripts/build.sh
build=${BUILD_DIR:-$root/build}
if [ ! -f data/example/data.idx ]; then
  scripts/gather-text.sh data/example/text
  "$build/launch/seqmesh" prep --output data/example/data data/example/text
fi
rm -rf runs/text
exec "$build/launch/seqmesh" train --config examples/text.toml "$@"
