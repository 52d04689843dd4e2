#!/usr/bin/env bash
# tiktoken encodings (runtime/tiktoken.h) against npm's gpt-tokenizer 4.0.0, a port of OpenAI's
# tiktoken that ships the real rank files: cl100k_base, o200k_base and r50k_base, on about 1 MB
# of varied text: Debian's license texts and this repository's C++ source, Unicode from many
# scripts with combining marks, emoji (with ZWJ sequences and skin tones), digits, runs of spaces,
# tabs and newlines, and contractions in both cases. Every document's ids must equal
# gpt-tokenizer's, and decode(encode(x)) == x. Exits 77 (skipped) when npm cannot install it.
#   tiktoken_ref_test.sh TOKENIZER_TOOL NPM_CACHE_DIR
set -euo pipefail
tool=$(realpath "$1")
cache=$(realpath -m "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# A command that fails outside a check says which (set -e would exit without a word).
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR
. "$root/tests/runtime/npm_packages.sh"
npm_packages "$cache" gpt-tokenizer@4.0.0

/usr/bin/python3 "$root/tests/runtime/tokenizer_corpus.py" "$work/docs" "$root"
# KEEP_CORPUS=DIR keeps the corpus there (bench/tiktoken_speed.sh reads it).
[[ -n "${KEEP_CORPUS:-}" ]] && rm -rf "$KEEP_CORPUS" && cp -r "$work/docs" "$KEEP_CORPUS"
bytes=$(du -cb "$work"/docs/* | tail -1 | cut -f1)
(( bytes >= 1000000 )) || fail "the corpus is only $bytes bytes"
docs=("$work"/docs/*)
for enc in cl100k_base o200k_base r50k_base; do
  ranks=$modules/gpt-tokenizer/data/$enc.tiktoken
  node "$root/tests/runtime/tiktoken_ref.js" "$modules" "$enc" "${docs[@]}" > "$work/$enc.ref"
  TOKENIZER_LOSSLESS=1 "$tool" "$ranks" "${docs[@]}" > "$work/$enc.ours" ||
    fail "$enc: tokenizer_tool failed"
  if ! cmp -s "$work/$enc.ref" "$work/$enc.ours"; then
    line=$(cmp "$work/$enc.ref" "$work/$enc.ours" | sed -n 's/.* line \([0-9]*\)$/\1/p' || true)
    fail "$enc: ids differ from gpt-tokenizer's for ${docs[$((line - 1))]}"
  fi
  ids=$(tr ',' '\n' < "$work/$enc.ours" | wc -l)
  echo "ok: $enc: ${#docs[@]} documents, $bytes bytes, $ids ids equal gpt-tokenizer's;" \
    "decode(encode(x)) == x"
done
