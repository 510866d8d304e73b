"""What keeping the job counts costs a PostgreSQL writer, by way of keeping them.

    .venv/bin/python -m bench.rollup            # 20,000 jobs
    .venv/bin/python -m bench.rollup --smoke    # 2,000 jobs, fewer rounds

On one throw-away PostgreSQL cluster with the current schema, the same writes are timed
with each way of keeping ``job_counts`` installed in turn:

- ``none``: no trigger (the floor: what the jobs' own writes cost);
- ``counter``: 0006 as first landed, a per-row trigger updating a row of ``job_counts``
  per key (a row lock held to commit);
- ``deltas-row``: the shipped one, a per-row trigger (column list and WHEN: only when a
  key column changes) appending a -1 and a +1 to ``job_count_deltas``;
- ``deltas-statement``: a statement-level trigger with transition tables, which
  PostgreSQL allows only without a column list, so it runs on every UPDATE of ``jobs``
  (heartbeats included) and groups the old rows (-1) and the new (+1) by key.

The writes: ``match`` (10 jobs' status changed by one statement, a transaction each),
``heartbeat`` (10 jobs' heartbeat time, no key changes), ``kill`` (1,000 jobs' status in
one statement), and ``contended`` (4 threads changing 10 jobs each of the same owner, with
2 ms of other work in the transaction after the change, as a match's history rows):
milliseconds per transaction, median of the rounds, the ways taken in turn ``--repeats``
times (median of those), and ratios to ``none``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import threading
import time
from collections.abc import Callable

from sqlalchemy import insert, text

from coordinator.store import revisions
from coordinator.store.database import Database
from coordinator.store.schema import ROLLUP_KEY, jobs

KEY = ", ".join(ROLLUP_KEY)
OLD = ", ".join(f"OLD.{name}" for name in ROLLUP_KEY)
NEW = ", ".join(f"NEW.{name}" for name in ROLLUP_KEY)
CHANGED = " OR ".join(f"OLD.{name} IS DISTINCT FROM NEW.{name}" for name in ROLLUP_KEY)
WHERE_OLD = " AND ".join(f"{name} = OLD.{name}" for name in ROLLUP_KEY)
UPSERT = f"ON CONFLICT ({KEY}) DO UPDATE SET n = job_counts.n + EXCLUDED.n"
PER_ROW = (
    f"CREATE TRIGGER bench_update AFTER UPDATE OF {KEY} ON jobs FOR EACH ROW "
    f"WHEN ({CHANGED}) EXECUTE FUNCTION bench_updated()"
)
WAYS: dict[str, list[str]] = {
    "none": [],
    "counter": [
        "CREATE FUNCTION bench_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"UPDATE job_counts SET n = n - 1 WHERE {WHERE_OLD}; INSERT INTO job_counts ({KEY}, n) "
        f"VALUES ({NEW}, 1) {UPSERT}; RETURN NULL; END $$",
        PER_ROW,
    ],
    "deltas-row": [
        "CREATE FUNCTION bench_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"INSERT INTO job_count_deltas ({KEY}, n) VALUES ({OLD}, -1), ({NEW}, 1); "
        "RETURN NULL; END $$",
        PER_ROW,
    ],
    "deltas-statement": [
        "CREATE FUNCTION bench_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"INSERT INTO job_count_deltas ({KEY}, n) SELECT {KEY}, SUM(n) FROM ("
        f"SELECT {KEY}, -1 AS n FROM old_rows UNION ALL SELECT {KEY}, 1 FROM new_rows) AS d "
        f"GROUP BY {KEY} HAVING SUM(n) <> 0; RETURN NULL; END $$",
        "CREATE TRIGGER bench_update AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_rows "
        "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_updated()",
    ],
}
OWNERS = 20


def install(db: Database, way: str) -> None:
    with db.write() as conn:
        conn.execute(text("DROP TRIGGER IF EXISTS job_counts_update ON jobs"))
        conn.execute(text("DROP TRIGGER IF EXISTS bench_update ON jobs"))
        conn.execute(text("DROP FUNCTION IF EXISTS bench_updated()"))
        for statement in WAYS[way]:
            conn.execute(text(statement))


def seed(db: Database, n_jobs: int) -> None:
    stamp = "2026-12-03T00:00:00+00:00"
    rows = [{"status": "Waiting", "owner": f"user{i % OWNERS}", "vo": "vo1",
             "job_name": f"job-{i}", "description": "{}", "created_at": stamp,
             "updated_at": stamp} for i in range(1, n_jobs + 1)]  # fmt: skip
    with db.write() as conn:
        conn.execute(insert(jobs), rows)


def timed(rounds: int, one: Callable[[int], None]) -> float:
    """Median milliseconds of ``one(round)``."""
    spent = []
    for i in range(rounds):
        began = time.perf_counter()
        one(i)
        spent.append((time.perf_counter() - began) * 1000)
    return statistics.median(spent)


def writes(db: Database, n_jobs: int, rounds: int) -> dict[str, float]:
    def status_of(i: int) -> str:
        return "Matched" if i % 2 == 0 else "Waiting"

    def match(i: int) -> None:
        first = (i // 2 * 10) % (n_jobs - 10) + 1
        with db.write() as conn:
            conn.execute(text("UPDATE jobs SET status = :s WHERE job_id BETWEEN :a AND :b"),
                         {"s": status_of(i), "a": first, "b": first + 9})  # fmt: skip

    def heartbeat(i: int) -> None:
        first = (i * 10) % (n_jobs - 10) + 1
        with db.write() as conn:
            beat = f"2026-12-03T00:00:{i % 60:02d}"
            conn.execute(text("UPDATE jobs SET heartbeat_at = :t WHERE job_id BETWEEN :a AND :b"),
                         {"t": beat, "a": first, "b": first + 9})  # fmt: skip

    def kill(i: int) -> None:
        with db.write() as conn:
            conn.execute(text("UPDATE jobs SET status = :s WHERE job_id <= 1000"),
                         {"s": "Killed" if i % 2 == 0 else "Waiting"})  # fmt: skip

    def contended(i: int) -> None:
        def one(thread: int) -> None:
            # Jobs of owner user1 only (job_id % OWNERS == 1), apart per thread.
            ids = [1 + OWNERS * (thread * 10 + k) for k in range(10)]
            with db.write() as conn:
                conn.execute(text("UPDATE jobs SET status = :s WHERE job_id = ANY(:ids)"),
                             {"s": status_of(i), "ids": ids})  # fmt: skip
                time.sleep(0.002)

        threads = [threading.Thread(target=one, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    figures = {
        "match": timed(rounds, match),
        "heartbeat": timed(rounds, heartbeat),
        "kill": timed(max(4, rounds // 20), kill),
        "contended": timed(max(4, rounds // 4), contended),
    }
    with db.write() as conn:  # the next way starts from the same jobs
        conn.execute(text("UPDATE jobs SET status = 'Waiting' WHERE status <> 'Waiting'"))
        conn.execute(text("DELETE FROM job_count_deltas"))
    return figures


def main(argv: list[str] | None = None) -> int:
    from tests.services.postgres import PostgresCluster

    parser = argparse.ArgumentParser(prog="bench.rollup", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2,000 jobs, fewer rounds")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the ways")
    options = parser.parse_args(argv)
    n_jobs, rounds = (2_000, 40) if options.smoke else (20_000, 200)
    cluster = PostgresCluster().start()
    try:
        db = Database(cluster.create_database("bench_rollup"))
        try:
            revisions.check(db)
            seed(db, n_jobs)
            runs: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
            for _ in range(options.repeats):  # the ways in turn: none gets no warm start
                for way in WAYS:
                    install(db, way)
                    runs[way].append(writes(db, n_jobs, rounds))
            results = {
                way: {name: statistics.median(run[name] for run in found) for name in found[0]}
                for way, found in runs.items()
            }
        finally:
            db.dispose()
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.base_dir, ignore_errors=True)
    print(f"{n_jobs} jobs, ms per transaction (median), ratio to no trigger")
    print(f"{'way':<18}" + "".join(f"{name:>20}" for name in results["none"]))
    for way, figures in results.items():
        cells = [f"{ms:8.2f} ({ms / results['none'][name]:4.2f}x)" for name, ms in figures.items()]
        print(f"{way:<18}" + "".join(f"{cell:>20}" for cell in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
