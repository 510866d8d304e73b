#!/usr/bin/env bash
# Bring up a one-node Slurm on this machine for the tests and benchmarks: munged, slurmctld and
# slurmd started directly (CI has no systemd), configured by a slurm.conf in a directory of our
# own that every Slurm command finds through SLURM_CONF, so /etc/slurm is never touched.
#
# Usage (as root): bash tests/slurm/start-slurm.sh [DIR]
#   DIR defaults to $GRIDPILOT_SLURM_DIR, else /tmp/gridpilot-slurm. Prints SLURM_CONF=... last.
# Idempotent: daemons already up are left alone. Stop with tests/slurm/stop-slurm.sh.
set -euo pipefail

dir="${1:-${GRIDPILOT_SLURM_DIR:-/tmp/gridpilot-slurm}}"
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"
wait_s="${GRIDPILOT_SLURM_WAIT_S:-60}"

fail() {
    echo "start-slurm: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "must run as root (SlurmUser=root, munged as the munge user)"
for tool in munged munge unmunge slurmctld slurmd sinfo scontrol; do
    command -v "$tool" >/dev/null || fail "$tool not found: run tests/setup-system.sh"
done

munge_up() {
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1
}

start_munge() {
    if munge_up; then
        return
    fi
    local key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then
        # Debian's package creates the key at install; an image may have dropped it.
        install -d -o munge -g munge -m 0700 /etc/munge
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$key"
    chmod 0400 "$key"
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- munged
    touch "$dir/munged.started"
    for _ in $(seq 50); do
        munge_up && return
        sleep 0.1
    done
    fail "munged did not answer; see /var/log/munge/munged.log"
}

conf_text() {
    local node_line host
    host="$(hostname -s)"
    # slurmd -C prints this node's real CPUs, sockets, cores, threads and RealMemory.
    node_line="$(slurmd -C | head -n 1)"
    case "$node_line" in
        "NodeName=$host "*) ;;
        *) fail "unexpected 'slurmd -C' output: $node_line" ;;
    esac
    cat <<EOF
# Written by tests/slurm/start-slurm.sh: a one-node test cluster.
ClusterName=gridpilot-test
# Loopback addresses: the cluster works even where the host name does not resolve.
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# No cgroups: the test machines' cgroup trees are v1 and/or not writable.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Finished jobs leave squeue/scontrol after MinJobAge; their state and exit code stay here.
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
ReturnToService=2
# The throughput benchmark submits 10,000-task arrays; finished jobs leave after 2 s.
MaxArraySize=20001
MaxJobCount=50000
MinJobAge=2
SchedulerType=sched/backfill
# Start the next job as soon as one ends: with the defaults (3 s batch_sched_delay) this node
# ran 0.8 trivial jobs/s, with these 2 jobs/s (bench/throughput.py, docs/benchmarks.md).
SchedulerParameters=sched_min_interval=0,batch_sched_delay=0
$node_line NodeAddr=127.0.0.1
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_alive() {
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_ready() {
    local state
    state="$(sinfo -h -N -o '%t' 2>/dev/null | head -n 1)"
    case "$state" in
        idle | mix | alloc) return 0 ;;
        *) return 1 ;;
    esac
}

mkdir -p "$dir/state" "$dir/spool"
start_munge
conf_text >"$conf.new"
if cmp -s "$conf.new" "$conf"; then
    rm "$conf.new"
    if pid_alive "$dir/slurmctld.pid" && pid_alive "$dir/slurmd.pid" && node_ready; then
        echo "SLURM_CONF=$conf"
        exit 0
    fi
else
    # A changed configuration (this script changed, or another host name): restart on it.
    bash "$(dirname "$0")/stop-slurm.sh" --daemons-only "$dir"
    mv "$conf.new" "$conf"
fi
pid_alive "$dir/slurmctld.pid" || slurmctld
pid_alive "$dir/slurmd.pid" || slurmd
deadline=$((SECONDS + wait_s))
until node_ready; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        sinfo -N -l >&2 || true
        tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
        fail "the node did not become idle within ${wait_s} s"
    fi
    sleep 0.2
done
echo "SLURM_CONF=$conf"
