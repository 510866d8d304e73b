#!/usr/bin/env bash
# System packages the tests use, installed from Debian's packages when running as root.
# Idempotent; does nothing for packages already present.
set -euo pipefail
packages=()
command -v bwrap >/dev/null || packages+=(bubblewrap)
# A static busybox makes the directory image the container tests run (tests/wrapper/rootfs.py).
[ -x /bin/busybox ] || packages+=(busybox-static)
if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${packages[@]}" >/dev/null
    else
        echo "setup-system: please install: ${packages[*]}" >&2
    fi
fi
