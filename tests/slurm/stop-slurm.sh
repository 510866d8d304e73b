#!/usr/bin/env bash
# Stop the test Slurm that tests/slurm/start-slurm.sh started: slurmd, slurmctld, and munged
# if that script started it (a munged that was already running is left alone).
#
# Usage (as root): bash tests/slurm/stop-slurm.sh [--daemons-only] [DIR]   (DIR as for start-slurm.sh)
#   --daemons-only: leave munged running.
set -euo pipefail

daemons_only=0
if [ "${1:-}" = --daemons-only ]; then
    daemons_only=1
    shift
fi
dir="${1:-${GRIDPILOT_SLURM_DIR:-/tmp/gridpilot-slurm}}"

stop_pidfile() {
    local pidfile="$1" pid
    [ -s "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

stop_pidfile "$dir/slurmd.pid"
stop_pidfile "$dir/slurmctld.pid"
if [ "$daemons_only" = 0 ] && [ -f "$dir/munged.started" ]; then
    stop_pidfile /run/munge/munged.pid
    rm -f "$dir/munged.started"
fi
