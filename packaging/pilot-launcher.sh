#!/usr/bin/env bash
# Start the single-file pilot on a CE, a batch slot or a cloud VM:
#   pilot-launcher.sh [pilot args...]   e.g. pilot-launcher.sh pilot --url https://... --token-file t --workdir w
# Finds a python3 >= 3.9, verifies the pyz's sha256, runs the pyz as a child (forwarding
# TERM, INT and USR1 to it, HUP as TERM, so the pilot's warm/cold stop still works) and
# exits with the pilot's exit code. The launcher's own failures have codes of their own (see
# docs/deployment.md): 20 no suitable python, 21 pyz missing, 22 checksum mismatch.
# Settings, from the environment:
#   GRIDPILOT_PYZ         the pyz (default: gridpilot-pilot.pyz next to this script)
#   GRIDPILOT_PYZ_SHA256  its expected sha256 (default: read from $GRIDPILOT_PYZ.sha256 if present)
#   GRIDPILOT_PYTHON      use this interpreter and no other
set -euo pipefail

readonly EXIT_NO_PYTHON=20 EXIT_NO_PYZ=21 EXIT_BAD_CHECKSUM=22
readonly MIN_PYTHON="3.9"

say() { echo "pilot-launcher: $*" >&2; }

script_dir="${BASH_SOURCE[0]%/*}"
[ "$script_dir" = "${BASH_SOURCE[0]}" ] && script_dir=.
pyz="${GRIDPILOT_PYZ:-$script_dir/gridpilot-pilot.pyz}"

# True when $1 runs and is at least MIN_PYTHON; written to run on Python 2 as well, so an
# old interpreter answers "no" instead of a syntax error.
python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 9) else 1)' >/dev/null 2>&1
}

find_python() {
    if [ -n "${GRIDPILOT_PYTHON:-}" ]; then
        # A forced interpreter is the site's choice: never fall back to another one.
        if python_ok "$GRIDPILOT_PYTHON"; then
            echo "$GRIDPILOT_PYTHON"
            return 0
        fi
        say "GRIDPILOT_PYTHON=$GRIDPILOT_PYTHON is not a runnable python >= $MIN_PYTHON"
        return 1
    fi
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3.10 python3.9 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    say "no python >= $MIN_PYTHON found (tried python3.13 ... python3.9, python3 on PATH=$PATH);" \
        "set GRIDPILOT_PYTHON to one"
    return 1
}

expected_sha256() {
    if [ -n "${GRIDPILOT_PYZ_SHA256:-}" ]; then
        echo "$GRIDPILOT_PYZ_SHA256"
    elif [ -r "$pyz.sha256" ]; then
        # sha256sum's format: "<hex>  <file name>"; only the hex counts.
        local line
        read -r line <"$pyz.sha256" || true
        echo "${line%% *}"
    fi
}

actual_sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        local line
        line="$(sha256sum "$pyz")"
        echo "${line%% *}"
    else
        "$1" -c 'import hashlib, sys
digest = hashlib.sha256()
with open(sys.argv[1], "rb") as pyz:
    for block in iter(lambda: pyz.read(1 << 20), b""):
        digest.update(block)
print(digest.hexdigest())' "$pyz"
    fi
}

verify_checksum() {
    local expected actual
    expected="$(expected_sha256)"
    if [ -z "$expected" ]; then
        say "warning: no checksum for $pyz (set GRIDPILOT_PYZ_SHA256 or ship $pyz.sha256); not verified"
        return 0
    fi
    actual="$(actual_sha256 "$1")"
    if [ "${actual,,}" != "${expected,,}" ]; then
        say "checksum mismatch for $pyz: expected sha256 $expected, got $actual; refusing to run it"
        return 1
    fi
}

child=""
interrupted=0
# shellcheck disable=SC2317  # only called from the traps below
forward() {
    interrupted=1
    [ -n "$child" ] && kill -s "$1" "$child" 2>/dev/null
    return 0
}

run_pilot() {
    # Without job control bash starts background commands with SIGINT and SIGQUIT ignored;
    # the subshell restores them before becoming the pilot, so a forwarded INT still stops it.
    (
        trap - INT QUIT
        exec "$1" "$pyz" "${@:2}"
    ) &
    child=$!
    local status=0
    while :; do
        interrupted=0
        wait "$child" && status=0 || status=$?
        # A trapped signal interrupts `wait` (status > 128) while the pilot still runs:
        # wait again for its real exit code.
        if [ "$interrupted" = 1 ] && kill -0 "$child" 2>/dev/null; then
            continue
        fi
        if [ "$interrupted" = 1 ]; then
            local again=0
            wait "$child" 2>/dev/null && again=0 || again=$?
            # 127: the status was already collected by the interrupted wait.
            [ "$again" != 127 ] && status=$again
        fi
        return "$status"
    done
}

main() {
    local python
    python="$(find_python)" || exit "$EXIT_NO_PYTHON"
    if [ ! -f "$pyz" ] || [ ! -r "$pyz" ]; then
        say "pilot file $pyz is missing or unreadable (set GRIDPILOT_PYZ)"
        exit "$EXIT_NO_PYZ"
    fi
    verify_checksum "$python" || exit "$EXIT_BAD_CHECKSUM"
    trap 'forward TERM' TERM
    trap 'forward INT' INT
    # The pilot has no HUP handler (it would die without draining): a hang-up asks it to stop.
    trap 'forward TERM' HUP
    trap 'forward USR1' USR1
    local status=0
    run_pilot "$python" "$@" || status=$?
    exit "$status"
}

main "$@"
