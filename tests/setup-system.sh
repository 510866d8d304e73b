#!/usr/bin/env bash
# System packages the tests use, installed from Debian's packages when running as root.
# Idempotent; does nothing for packages already present.
set -euo pipefail
packages=()
command -v bwrap >/dev/null || packages+=(bubblewrap)
# A static busybox makes the directory image the container tests run (tests/wrapper/rootfs.py).
[ -x /bin/busybox ] || packages+=(busybox-static)
# The launcher scripts are linted with shellcheck (tests/packaging/test_launcher.py).
command -v shellcheck >/dev/null || packages+=(shellcheck)
# systemd-analyze verifies the coordinator's unit (tests/packaging/test_service_files.py);
# installing the package starts nothing in a container.
command -v systemd-analyze >/dev/null || packages+=(systemd)
# A one-node Slurm for the batch-system tests and the throughput bench (tests/slurm/).
command -v slurmctld >/dev/null && command -v slurmd >/dev/null || packages+=(slurm-wlm)
command -v munged >/dev/null || packages+=(munge)
# The portal's browser tests drive Debian's chromium through its chromedriver (tests/web/).
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
# curl is the plain-HTTP baseline of the sandbox bench (tests/bench/test_sandboxes.py).
command -v curl >/dev/null || packages+=(curl)
# /usr/bin/time measures tar's peak memory in the unpack bench (tests/bench/test_unpack.py).
[ -x /usr/bin/time ] || packages+=(time)
# A C compiler builds the LD_PRELOAD library of the job-environment attack test
# (tests/wrapper/test_job_environment.py).
command -v cc >/dev/null || packages+=(gcc libc6-dev)
# PostgreSQL 15 for the coordinator's PostgreSQL test pass and the scale-out tests: the
# tests run throw-away clusters of their own (tests/services/postgres.py), never the
# package's own cluster.
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    packages+=(postgresql-15)
    # The package would create and start a cluster of its own ("main"): none is needed.
    if [ "$(id -u)" = 0 ] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
fi
# haproxy in front of coordinator replicas (tests/scaleout/, packaging/scaleout/haproxy.cfg).
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || packages+=(haproxy)
if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq -o Dpkg::Options::=--force-confold "${packages[@]}" >/dev/null
    else
        echo "setup-system: please install: ${packages[*]}" >&2
    fi
fi
