#!/usr/bin/env bash
# Build the single-file pilot: packaging/dist/gridpilot-pilot.pyz (or the path given) and a
# sha256sum-format checksum beside it. Needs a python3 with pip, and PyPI (or a mirror).
#   bash packaging/build-pyz.sh [OUTPUT]
set -euo pipefail
output="${1:-}"
case "$output" in
    "" | /*) ;;
    *) output="$PWD/$output" ;;
esac
cd "$(dirname "$0")/.."
output="${output:-$PWD/packaging/dist/gridpilot-pilot.pyz}"
python="${GRIDPILOT_BUILD_PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
exec "$python" packaging/pyz/build.py "$output"
