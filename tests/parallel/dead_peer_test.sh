#!/bin/bash
# Dead-peer test driver (CTest): runs dead_peer_mpi_test under mpirun with a stopped or killed
# victim and checks that every survivor failed within the deadline (plus slack) with an error
# naming the operation, the step, and the victim as the only rank silent in the roll call. mpirun's own exit status is ignored: a job with
# a dead rank always ends non-zero. The whole run is bounded by `timeout`.
#   dead_peer_test.sh <binary> <ranks> <stop|kill> <deadline_ms> [mpirun args...]
set -u
bin=$1 n=$2 mode=$3 deadline_ms=$4
shift 4
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
start=$(date +%s%N)
timeout -s KILL 60 "$@" -n "$n" "$bin" "$mode" "$deadline_ms" "$dir" > "$dir/log" 2>&1
rc=$?
wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))
cat "$dir/log"
echo "mpirun exit status $rc, wall ${wall_ms} ms"
victim=$((n - 1))
fail=0
for ((r = 0; r < victim; r++)); do
  f="$dir/rank$r"
  if [[ ! -s $f ]]; then echo "FAIL: rank $r wrote no verdict"; fail=1; continue; fi
  read -r ms msg < "$f"
  echo "rank $r: ${ms} ms: $msg"
  if (( ms > deadline_ms + 3000 )); then echo "FAIL: rank $r took ${ms} ms"; fail=1; fi
  if [[ $msg != *"timed out after ${deadline_ms} ms at step 3"* ]]; then
    echo "FAIL: rank $r message does not name the deadline and step 3"; fail=1; fi
  if [[ $msg != *"AllReduce"* && $msg != *"P2PGroup"* ]]; then
    echo "FAIL: rank $r message names no operation"; fail=1; fi
  # The victim's successor names it alone; the others name it among the ranks they wait for.
  if [[ $r -eq 0 && $msg != *"P2PGroup"*"recv from $victim"*"waiting for rank(s) [$victim]"* ]]; then
    echo "FAIL: rank 0 message does not name the victim $victim as the silent peer"; fail=1; fi
  # Every survivor's roll call hears the other survivors and names the victim alone.
  if [[ $msg != *"silent in a roll call after the timeout: [$victim]"* ]]; then
    echo "FAIL: rank $r message does not name rank $victim alone as silent"; fail=1; fi
done
[[ $fail -eq 0 ]] && echo "PASS: survivors failed fast naming rank $victim"
exit $fail
