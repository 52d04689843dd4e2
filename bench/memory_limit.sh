# Sourced by the offload benchmarks: a kernel-enforced memory limit for the runs they start.
#
#   source bench/memory_limit.sh
#   memory_limit_open NAME LIMIT_MIB   # a child NAME-<pid> of this shell's memory cgroup
#   limited CMD ARGS...                # runs CMD inside it
#   memory_limit_close                 # (from the caller's EXIT trap) empties and removes it
#
# cgroup v1's memory controller (memory.limit_in_bytes; peak: memory.max_usage_in_bytes) or
# cgroup v2 (memory.max, swap off; peak: memory.peak). Sets $cg, $peak_file and
# $memory_limit_version. Needs root (or a delegated cgroup).
memory_limit_open() {
  local name=$1 limit_mib=$2 line
  # This shell's memory cgroup: v1 ("N:memory:/path") or v2 ("0::/path").
  if line=$(grep -E '^[0-9]+:memory:' /proc/self/cgroup); then
    memory_limit_version=1; memory_limit_parent=/sys/fs/cgroup/memory${line#*:memory:}
  else
    memory_limit_version=2; line=$(grep -E '^0::' /proc/self/cgroup)
    memory_limit_parent=/sys/fs/cgroup${line#0::}
  fi
  cg=$memory_limit_parent/$name-$$
  mkdir "$cg"
  if [[ $memory_limit_version == 1 ]]; then
    echo $((limit_mib << 20)) > "$cg/memory.limit_in_bytes"
    peak_file=$cg/memory.max_usage_in_bytes
    echo "limit: cgroup v1 $cg/memory.limit_in_bytes = $limit_mib MiB"
  else
    echo $((limit_mib << 20)) > "$cg/memory.max"
    echo 0 > "$cg/memory.swap.max" 2>/dev/null || true
    peak_file=$cg/memory.peak
    echo "limit: cgroup v2 $cg/memory.max = $limit_mib MiB"
  fi
}

# Resets the peak where the controller allows it (v1).
memory_limit_reset_peak() {
  [[ $memory_limit_version == 1 ]] && echo 0 > "$peak_file" || true
}

limited() { sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"; }

memory_limit_close() {
  if [[ -n "${cg:-}" && -d $cg ]]; then
    # Anything left in the group goes back to the parent before the group is removed.
    for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do
      echo "$p" > "$memory_limit_parent/cgroup.procs" || true
    done
    rmdir "$cg" 2>/dev/null || true
  fi
}
