#!/usr/bin/env bash
# Install gridpilot with its test extras into .venv and run every check CI runs:
# lint (ruff), types (mypy), Python 3.9 compatibility of the worker side (vermin), tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup-system.sh
bash packaging/install.sh test

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== vermin (worker side must run on Python 3.9)"
.venv/bin/vermin -q -t=3.9- --no-tips --violations --no-eval-annotations protocol pilot wrapper checks
echo "== pytest"
# The suite mostly waits (pilots, heartbeats, leases, sleeps): four workers on two cores
# (pytest-xdist). --dist loadgroup keeps the tests of one xdist_group on one worker: the
# Slurm tests share the machine's one test Slurm (tests/conftest.py). One process, to debug:
# GRIDPILOT_TEST_WORKERS=0 (or pytest's own -n 0 / -p no:xdist).
workers="${GRIDPILOT_TEST_WORKERS:-4}"
parallel=(-n "$workers" --dist loadgroup)
set +e
.venv/bin/python -m pytest "${parallel[@]}" --durations=40 "$@"  # the slowest: the budget
status=$?
if [ "$status" = 0 ] && [ "$#" = 0 ]; then
    # The whole coordinator suite and the migrations again on PostgreSQL (a throw-away
    # cluster per worker, a database per coordinator): docs/development.md, "Both databases".
    echo "== pytest on PostgreSQL: tests/coordinator tests/migrations"
    .venv/bin/python -m pytest "${parallel[@]}" --durations=20 --database postgresql \
        tests/coordinator tests/migrations
    status=$?
fi
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
