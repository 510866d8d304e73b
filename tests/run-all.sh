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
.venv/bin/python -m pytest --durations=40 "$@"  # the slowest tests: the 25-minute budget
status=$?
if [ "$status" = 0 ] && [ "$#" = 0 ]; then
    # The store's PostgreSQL-specific behaviour again on PostgreSQL (one throw-away cluster,
    # a database per coordinator): schema and migrations, the SKIP LOCKED claims of the hot
    # path (exactly once with 50 pilots and a SIGKILLed coordinator, the queue index, the hot
    # routes; every match's fair-share upsert with them), the sweeps' locks, ON CONFLICT
    # queue creation.
    # GRIDPILOT_CI_POSTGRESQL=full runs all of tests/coordinator there instead (about 6 min
    # more; docs/development.md, "Both databases").
    echo "== pytest on PostgreSQL (${GRIDPILOT_CI_POSTGRESQL:-subset})"
    if [ "${GRIDPILOT_CI_POSTGRESQL:-subset}" = full ]; then
        postgresql_tests=(tests/coordinator tests/migrations)
    else
        postgresql_tests=(
            tests/migrations
            tests/coordinator/test_concurrency.py
            tests/coordinator/test_hotpath.py
            tests/coordinator/test_queue_index.py
            tests/coordinator/test_leases.py
            tests/coordinator/test_taskqueues.py
        )
    fi
    .venv/bin/python -m pytest --database postgresql "${postgresql_tests[@]}"
    status=$?
fi
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
