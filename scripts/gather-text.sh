#!/usr/bin/env bash
# Gathers natural English text that every Debian machine already has (license texts and the
# copyright files and changelogs of installed packages) into one folder, one file per document.
# Nothing is downloaded and nothing gathered is committed.
#   scripts/gather-text.sh [OUT_DIR]     (default: data/example/text)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/data/example/text}
rm -rf "$out"
mkdir -p "$out/licenses" "$out/copyright" "$out/changelog"
cp /usr/share/common-licenses/* "$out/licenses/" 2>/dev/null || true
n=0
for f in /usr/share/doc/*/copyright; do
  [ -f "$f" ] || continue
  pkg=$(basename "$(dirname "$f")")
  cp "$f" "$out/copyright/$pkg.txt"
  n=$((n + 1))
done
m=0
for f in /usr/share/doc/*/changelog.Debian.gz; do
  [ -f "$f" ] || continue
  pkg=$(basename "$(dirname "$f")")
  # The most recent entries only: changelogs of big packages run to megabytes.
  zcat "$f" 2>/dev/null | head -n 400 > "$out/changelog/$pkg.txt" || true
  m=$((m + 1))
done
echo "gather-text: $(ls "$out/licenses" | wc -l) licenses, $n copyright files, $m changelogs," \
  "$(du -sh "$out" | cut -f1) in $out"
