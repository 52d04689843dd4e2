#!/usr/bin/env bash
# The command table: for every command `seqmesh --help` lists, `seqmesh CMD --help`, `-h` and
# `seqmesh help CMD` exit 0 with the same text, which mentions every flag the command accepts
# (its parser's --list-flags) and shows an example; every listed flag is accepted (never "unknown
# flag"); an unknown flag is one error naming the closest flag; and the commands that take a
# configuration (train, launch, coordinator) list every key of the resolved configuration.
set -euo pipefail
seqmesh=$1
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$seqmesh" --help > "$work/usage" || fail "seqmesh --help exited $?"
mapfile -t commands < <(sed -n 's/^  \([a-z-]*\)  .*/\1/p' "$work/usage" | grep -v '^help$')
[ "${#commands[@]}" -ge 9 ] || fail "only ${#commands[@]} commands listed: ${commands[*]}"

# Every key of a resolved configuration (what train writes to config.toml).
printf 'hello world, some text to train on.\n' > "$work/a.txt"
"$seqmesh" prep --output "$work/d" "$work/a.txt" > /dev/null
"$seqmesh" train --training.steps=1 --config /dev/null --data.path="\"$work/d\"" \
  --checkpoint.dir="\"$work/run\"" --optimizer.warmup_steps=0 > /dev/null 2>&1 || true
[ -f "$work/run/config.toml" ] || fail "train wrote no config.toml"
mapfile -t keys < <(awk '/^\[/{s=substr($0,2,length($0)-2)} /=/{print s"."$1}' "$work/run/config.toml")
[ "${#keys[@]}" -ge 30 ] || fail "only ${#keys[@]} config keys"

for cmd in "${commands[@]}"; do
  "$seqmesh" "$cmd" --help > "$work/long" || fail "$cmd --help exited $?"
  "$seqmesh" "$cmd" -h > "$work/short" || fail "$cmd -h exited $?"
  "$seqmesh" help "$cmd" > "$work/help" || fail "help $cmd exited $?"
  cmp -s "$work/long" "$work/short" || fail "$cmd: -h differs from --help"
  cmp -s "$work/long" "$work/help" || fail "$cmd: seqmesh help $cmd differs from --help"
  grep -q "^example:" "$work/long" || fail "$cmd --help shows no example"
  mapfile -t flags < <("$seqmesh" "$cmd" --list-flags)
  [ "${#flags[@]}" -ge 3 ] || fail "$cmd lists only ${#flags[@]} flags"
  for f in "${flags[@]}"; do
    grep -qe "$f" "$work/long" || fail "$cmd --help does not mention $f"
    # Accepted: whatever else goes wrong, never an unknown flag.
    if "$seqmesh" "$cmd" "$f" x > "$work/out" 2>&1 < /dev/null; then :; fi
    if grep -q "unknown flag '$f'" "$work/out"; then fail "$cmd refuses its own flag $f"; fi
  done
  if "$seqmesh" "$cmd" --no-such-flag > "$work/out" 2>&1; then fail "$cmd accepted --no-such-flag"; fi
  grep -q "unknown flag '--no-such-flag' (did you mean --" "$work/out" || fail "$cmd: $(cat "$work/out")"
  case "$cmd" in
    train | launch | coordinator)
      for k in "${keys[@]}"; do
        grep -q "^  $k " "$work/long" || fail "$cmd --help does not list the config key $k"
      done ;;
  esac
done
echo "PASS: ${#commands[@]} commands"
