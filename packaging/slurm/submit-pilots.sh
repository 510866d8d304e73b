#!/usr/bin/env bash
# Start N gridpilot pilots on a Slurm cluster: one sbatch job array whose tasks each run one
# pilot through packaging/pilot-launcher.sh (or GRIDPILOT_PILOT_CMD) in a work dir of its own.
# Prints the Slurm job (array) id on stdout. See docs/deployment.md "Pilots on Slurm".
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

usage() {
    cat <<'EOF'
usage: submit-pilots.sh [options] [-- sbatch options...]

  -n, --pilots N          number of pilots (tasks of one job array) [1]
  --url URL               coordinator URL [$GRIDPILOT_URL]
  --token-file FILE       pilot token file, readable on the worker nodes [$GRIDPILOT_TOKEN_FILE]
  --pyz FILE              single-file pilot [$GRIDPILOT_PYZ, else packaging/dist/gridpilot-pilot.pyz]
  --pyz-sha256 HEX        its expected sha256 [$GRIDPILOT_PYZ_SHA256, else FILE.sha256]
  --launcher FILE         launcher script [packaging/pilot-launcher.sh]
  --pilot-cmd CMD         run CMD instead of the launcher, e.g. "python3 -m pilot" [$GRIDPILOT_PILOT_CMD]
  --pilot-arg ARG         one more pilot option, repeatable, e.g. --pilot-arg=--idle-timeout-s=30
  --workdir-root DIR      pilots' work dirs go under DIR on the node [$TMPDIR, else /tmp]
  --keep-workdir          keep a pilot's work dir even when it ends with exit code 0
  --log-dir DIR           where Slurm writes each pilot's output [current directory]
  --job-name NAME         Slurm job name [gridpilot-pilot]
  --dry-run               print the sbatch command and batch script; submit nothing
  -h, --help              this help

Everything after "--" goes to sbatch unchanged (and wins over the options above), e.g.
  submit-pilots.sh -n 10 --url https://wms.example.org --token-file ~/pilot.token \
      -- --partition=grid --time=24:00:00 --cpus-per-task=8 --mem=16G
EOF
}

die() {
    echo "submit-pilots: $*" >&2
    exit 2
}

pilots=1
url="${GRIDPILOT_URL:-}"
token_file="${GRIDPILOT_TOKEN_FILE:-}"
pyz="${GRIDPILOT_PYZ:-}"
pyz_sha256="${GRIDPILOT_PYZ_SHA256:-}"
launcher="$here/../pilot-launcher.sh"
pilot_cmd="${GRIDPILOT_PILOT_CMD:-}"
pilot_args=()
workdir_root=""
keep_workdir=0
log_dir="$PWD"
job_name="gridpilot-pilot"
dry_run=0
sbatch_args=()

need() { [ "$#" -ge 2 ] || die "$1 needs a value"; }

while [ "$#" -gt 0 ]; do
    case "$1" in
        -n | --pilots) need "$@"; pilots="$2"; shift 2 ;;
        --url) need "$@"; url="$2"; shift 2 ;;
        --token-file) need "$@"; token_file="$2"; shift 2 ;;
        --pyz) need "$@"; pyz="$2"; shift 2 ;;
        --pyz-sha256) need "$@"; pyz_sha256="$2"; shift 2 ;;
        --launcher) need "$@"; launcher="$2"; shift 2 ;;
        --pilot-cmd) need "$@"; pilot_cmd="$2"; shift 2 ;;
        --pilot-arg) need "$@"; pilot_args+=("$2"); shift 2 ;;
        --pilot-arg=*) pilot_args+=("${1#--pilot-arg=}"); shift ;;
        --workdir-root) need "$@"; workdir_root="$2"; shift 2 ;;
        --keep-workdir) keep_workdir=1; shift ;;
        --log-dir) need "$@"; log_dir="$2"; shift 2 ;;
        --job-name) need "$@"; job_name="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; sbatch_args=("$@"); break ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[[ "$pilots" =~ ^[1-9][0-9]*$ ]] || die "--pilots must be a positive number, not '$pilots'"
[ -n "$url" ] || die "--url (or GRIDPILOT_URL) is required"
[ -n "$token_file" ] || die "--token-file (or GRIDPILOT_TOKEN_FILE) is required"
[ -r "$token_file" ] || die "cannot read the token file $token_file"
# The batch job runs elsewhere, later: hand it absolute paths.
token_file="$(realpath "$token_file")"
log_dir="$(realpath "$log_dir")"
if [ -z "$pilot_cmd" ]; then
    [ -x "$launcher" ] || [ -f "$launcher" ] || die "launcher $launcher not found (or give --pilot-cmd)"
    launcher="$(realpath "$launcher")"
    if [ -z "$pyz" ] && [ -f "$here/../dist/gridpilot-pilot.pyz" ]; then
        pyz="$here/../dist/gridpilot-pilot.pyz"
    fi
    [ -z "$pyz" ] || pyz="$(realpath "$pyz")"
fi

# One line per setting, each value quoted for bash, so any path or URL survives.
batch_script() {
    echo "#!/bin/bash"
    echo "# gridpilot pilot, written by packaging/slurm/submit-pilots.sh"
    echo "set -euo pipefail"
    if [ -n "$pilot_cmd" ]; then
        printf 'read -r -a command <<< %q\n' "$pilot_cmd"
    else
        printf 'command=(bash %q)\n' "$launcher"
        [ -z "$pyz" ] || printf 'export GRIDPILOT_PYZ=%q\n' "$pyz"
        [ -z "$pyz_sha256" ] || printf 'export GRIDPILOT_PYZ_SHA256=%q\n' "$pyz_sha256"
    fi
    printf 'url=%q\n' "$url"
    printf 'token_file=%q\n' "$token_file"
    printf 'keep_workdir=%q\n' "$keep_workdir"
    echo "pilot_args=()"
    local arg
    for arg in "${pilot_args[@]+"${pilot_args[@]}"}"; do
        printf 'pilot_args+=(%q)\n' "$arg"
    done
    if [ -n "$workdir_root" ]; then
        printf 'root=%q\n' "$workdir_root"
    else
        # shellcheck disable=SC2016 # expands in the batch job, on the node
        echo 'root="${TMPDIR:-/tmp}"'
    fi
    cat <<'EOF'
workdir="$root/gridpilot-pilot-$SLURM_JOB_ID"
mkdir -p "$workdir"
# Slurm signals the whole job at its time limit or on scancel; pass the batch shell's
# signal on too (sbatch --signal=B:TERM@120 reaches only this shell), so the pilot drains.
# The trap is set before the pilot starts, so no signal can slip in between.
pid=""
stop_requested=0
# shellcheck disable=SC2317 # run by the trap
forward_stop() {
    stop_requested=1
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
}
trap forward_stop TERM INT
"${command[@]}" pilot --url "$url" --token-file "$token_file" --workdir "$workdir" \
    ${pilot_args[@]+"${pilot_args[@]}"} &
pid=$!
if [ "$stop_requested" = 1 ]; then kill -TERM "$pid" 2>/dev/null || true; fi
status=0
wait "$pid" || status=$?
# Above 128: a trapped signal interrupted wait, or the pilot died of a signal. Wait again
# until bash gives the same answer for a pilot that is gone: that is the pilot's own status.
while [ "$status" -gt 128 ]; do
    again=0
    wait "$pid" || again=$?
    if [ "$again" = "$status" ] && ! kill -0 "$pid" 2>/dev/null; then
        break
    fi
    status=$again
done
if [ "$status" = 0 ] && [ "$keep_workdir" = 0 ]; then
    rm -rf "$workdir"
fi
exit "$status"
EOF
}

command=(sbatch --parsable --job-name "$job_name" --array "1-$pilots"
    --output "$log_dir/$job_name-%A_%a.out" "${sbatch_args[@]+"${sbatch_args[@]}"}")
if [ "$dry_run" = 1 ]; then
    printf '%q ' "${command[@]}"
    echo
    batch_script
    exit 0
fi
command -v sbatch >/dev/null || die "sbatch not found: run this on a Slurm submit host"
job_id="$(batch_script | "${command[@]}")"
echo "${job_id%%;*}"
