#!/usr/bin/env bash
# Checks every #include "layer/..." in the layer folders against DESIGN.md section 2's arrows:
#   runtime/ and proto/ use nothing of ours; parallel/ and scheduler/ use proto/ and runtime/;
#   offload/ uses runtime/; launch/ uses all of them; python/ uses launch/ (and what it exports).
# Prints one line per include that points up or sideways (file:line, the include, what the layer
# may use) and exits 1 if there is any. Usage: scripts/check-layers.sh [source root]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
declare -A allowed=(
  [runtime]="runtime"
  [proto]="proto"
  [parallel]="parallel proto runtime"
  [offload]="offload runtime"
  [scheduler]="scheduler proto runtime"
  [launch]="launch scheduler parallel offload proto runtime"
  [python]="python launch scheduler parallel offload proto runtime"
)
bad=0
for layer in "${!allowed[@]}"; do
  [ -d "$root/$layer" ] || continue
  while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    line=${rest%%:*}
    target=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<< "$rest")
    case " ${allowed[$layer]} " in
      *" $target "*) ;;
      *)
        echo "${file#"$root"/}:$line: $layer/ includes $target/ (\"$(sed -E 's/.*#include "([^"]+)".*/\1/' <<< "$rest")\"); $layer/ may use only: ${allowed[$layer]}"
        bad=1
        ;;
    esac
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include "[a-z_]+/' "$root/$layer" \
             --include='*.h' --include='*.cc' --include='*.cu' --include='*.cuh' || true)
done
exit $bad
