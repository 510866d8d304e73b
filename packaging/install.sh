#!/usr/bin/env bash
# Install gridpilot from this checkout into ./.venv, with one extra:
#   bash packaging/install.sh               # coordinator (server) dependencies, enough for the demo
#   bash packaging/install.sh test          # everything the test suite needs
# On a fresh Debian, python3 lacks venv/ensurepip; as root this installs python3-venv first.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-coordinator}"

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
        echo "install: python3 has no venv module; install python3-venv (Debian) first" >&2
        exit 1
    fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extra]"
