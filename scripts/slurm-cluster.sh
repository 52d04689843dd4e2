#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, from Debian's slurm-wlm and munge, all its state in
# DIR (nothing under /etc): munged with a fresh key, slurmctld and slurmd on free ports, a
# partition `debug` of this host with CPUS slots (default 8: SlurmdParameters=config_overrides
# lets a small machine hold a 4-rank job), proctrack/linuxproc (no cgroups needed).
#   scripts/slurm-cluster.sh start DIR [CPUS]   prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm-cluster.sh stop DIR
# Then: eval "$(scripts/slurm-cluster.sh start /tmp/slurm)"; sbatch -n 4 examples/slurm.sbatch ...
set -euo pipefail
cmd=${1:?usage: slurm-cluster.sh start|stop DIR [CPUS]}
dir=$(realpath -m "${2:?usage: slurm-cluster.sh start|stop DIR [CPUS]}")
cpus=${3:-8}
stop() {
  for pid in slurmd slurmctld munge/munged; do
    [[ -f "$dir/$pid.pid" ]] && kill "$(cat "$dir/$pid.pid")" 2> /dev/null || true
  done
  for _ in $(seq 1 50); do
    pgrep -f "$dir/slurm.conf" > /dev/null || break
    sleep 0.1
  done
}
if [[ $cmd == stop ]]; then
  stop
  exit 0
fi
if [[ $cmd != start ]]; then
  echo "slurm-cluster.sh: unknown command $cmd (start or stop)" >&2
  exit 2
fi
for tool in munged slurmctld slurmd sbatch; do
  if ! command -v "$tool" > /dev/null; then
    echo "slurm-cluster.sh: $tool not found: apt-get install slurm-wlm munge" >&2
    exit 1
  fi
done
mkdir -p "$dir"/{munge,state,spool,log}
chmod 700 "$dir/munge"
if [[ ! -f "$dir/munge/munge.key" ]]; then
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 600 "$dir/munge/munge.key"
munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" --force \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
  --seed-file="$dir/munge/seed"
# Two free TCP ports for slurmctld and slurmd.
read -r ctld_port d_port < <(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
host=$(hostname)
cat > "$dir/slurm.conf" <<CONF
ClusterName=seqmesh
SlurmctldHost=$host
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=30
NodeName=$host CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -c -f "$SLURM_CONF"
slurmd -c -f "$SLURM_CONF"
for _ in $(seq 1 600); do  # up to 60 s: a loaded machine starts the daemons slowly
  sinfo -h -o %t 2> /dev/null | grep -q idle && break
  sleep 0.1
done
if ! sinfo -h -o %t | grep -q idle; then
  echo "slurm-cluster.sh: the node did not come up: $(tail -3 "$dir/log/slurmctld.log")" >&2
  stop
  exit 1
fi
echo "export SLURM_CONF=$SLURM_CONF"
