#!/usr/bin/env bash
# A one-node Slurm on localhost for tests/test_slurm_real.py, as root on a Debian machine:
# installs munge and slurm-wlm with apt when missing, writes /etc/slurm/slurm.conf (never over
# one it did not write), starts munged, slurmctld and slurmd, and waits until sinfo shows the
# node idle. Running it again is harmless: what is up stays up.
#   .ci/slurm-up.sh          start (or check)
#   .ci/slurm-up.sh --stop   stop the three daemons it started
# State, spool and logs: $PLGRAPH_SLURM_DIR (/tmp/plgraph-slurm).
set -euo pipefail

state="${PLGRAPH_SLURM_DIR:-/tmp/plgraph-slurm}"
conf=/etc/slurm/slurm.conf
marker="# written by plgraph .ci/slurm-up.sh"
munge_pid=/run/munge/munged.pid

# The daemon of this pid file runs (a stale file's pid may belong to another program by now).
alive() { [[ -s "$1" ]] && [[ "$(ps -p "$(cat "$1")" -o comm= 2>/dev/null)" == "$2" ]]; }

stop_daemon() {  # pid file, name: TERM, then wait up to 10 s for it to go
    alive "$1" "$2" || return 0
    local pid
    pid="$(cat "$1")"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    echo "slurm-up: $2 (pid $pid) still running after SIGTERM" >&2
}

if [[ "${1:-}" == "--stop" ]]; then
    stop_daemon "$state/slurmd.pid" slurmd
    stop_daemon "$state/slurmctld.pid" slurmctld
    stop_daemon "$munge_pid" munged
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    echo "slurm-up: run as root (apt-get, munged and slurmd need it)" >&2
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null
fi

if [[ -e "$conf" ]] && ! grep -qxF "$marker" "$conf"; then
    echo "slurm-up: $conf exists and was not written by this script; leaving it alone" >&2
    exit 1
fi
host="$(hostname -s)"
mkdir -p "$state/state" "$state/spool"
# The node line as slurmd measures it (CPUs, sockets, memory), so the node is not rejected.
node="$(slurmd -C | head -1) NodeAddr=127.0.0.1 State=UNKNOWN"
mkdir -p "$(dirname "$conf")"
cat > "$conf.tmp" <<EOF
$marker
ClusterName=plgraph
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
# No cgroups here: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobRequeue=1
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
# Ended jobs stay visible to scontrol show job for 5 min (no accounting database for sacct).
MinJobAge=300
$node
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$conf.tmp" "$conf"; then
    mv "$conf.tmp" "$conf"
    # A changed config: restart the Slurm daemons that run with the old one.
    stop_daemon "$state/slurmd.pid" slurmd
    stop_daemon "$state/slurmctld.pid" slurmctld
else
    rm "$conf.tmp"
fi

if ! alive "$munge_pid" munged; then
    [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- munged
fi
alive "$state/slurmctld.pid" slurmctld || slurmctld
alive "$state/slurmd.pid" slurmd || slurmd

for _ in $(seq 60); do
    node_state="$(sinfo -h -N -n "$host" -o %T 2>/dev/null || true)"
    case "$node_state" in
        idle|mixed|allocated) sinfo; exit 0 ;;
        down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
echo "slurm-up: node $host not idle after 30 s (sinfo: ${node_state:-no answer});" \
     "logs in $state/slurmctld.log and $state/slurmd.log" >&2
exit 1
