#!/usr/bin/env bash
# The main job: installs what is missing, builds, and trains a small Llama on synthetic packed
# documents, printing the loss as it falls. Extra arguments go to the trainer (--steps N ...).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build=${BUILD_DIR:-$root/build}
exec "$build/examples/train_synthetic" "$@"
