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
set +e
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" = 0 ] && [ "$#" = 0 ]; then
    # The coordinator's tests again, on PostgreSQL (one throw-away cluster, a database per
    # coordinator): the same code must pass on both databases (docs/development.md).
    echo "== pytest on PostgreSQL"
    .venv/bin/python -m pytest tests/coordinator tests/migrations --database postgresql
    status=$?
fi
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
