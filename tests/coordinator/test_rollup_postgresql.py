"""The job counts rollup under concurrent writers on PostgreSQL (whatever ``--database``
says: SQLite has one writer at a time). The triggers append deltas instead of updating a
shared counter row, so writers of the same counts neither wait for nor deadlock with each
other, and folding the deltas while jobs change loses nothing (coordinator/store/rollup.py,
docs/scale-out.md "Job counts without hot rows")."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, delete, insert, text, update

from coordinator.store import rollup
from coordinator.store.database import Database
from coordinator.store.schema import jobs
from tests.conftest import DATABASES, launch_coordinator
from tests.services.postgres import PostgresCluster

DEADLINE_S = 60.0
LOCK_TIMEOUT = "SET lock_timeout = '5s'"
"""No statement here waits longer for a lock: a writer that would block fails instead."""
STAMP = "2026-12-03T00:00:00+00:00"
KEY = "vo, owner, owner_group, site, status, job_group"
COUNTED = f"SELECT {KEY}, COUNT(*) FROM jobs GROUP BY {KEY} ORDER BY {KEY}"
ROLLED = (
    f"SELECT {KEY}, SUM(n) FROM (SELECT {KEY}, n FROM job_counts UNION ALL "
    f"SELECT {KEY}, n FROM job_count_deltas) AS c GROUP BY {KEY} HAVING SUM(n) <> 0 "
    f"ORDER BY {KEY}"
)


@pytest.fixture
def db(postgres_cluster: PostgresCluster, tmp_path: Path) -> Iterator[Database]:
    database = Database(DATABASES.postgres_url(f"rollup-{tmp_path}"))
    try:
        yield database
    finally:
        database.dispose()


def add_jobs(conn: Connection, owner: str, n: int, status: str = "Waiting") -> list[int]:
    rows = [{"status": status, "owner": owner, "vo": "vo1", "job_name": f"{owner}-{i}",
             "description": "{}", "created_at": STAMP, "updated_at": STAMP}
            for i in range(n)]  # fmt: skip
    return list(conn.execute(insert(jobs).returning(jobs.c.job_id), rows).scalars())


def rollup_is_true(conn: Connection) -> bool:
    return conn.execute(text(ROLLED)).all() == conn.execute(text(COUNTED)).all()


def run_all(*targets: Callable[[], None]) -> list[BaseException]:
    """Run each target in a thread; the errors they raised (none may outlive the deadline)."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
        assert not thread.is_alive(), "a writer is still waiting after the deadline"
    return errors


def start(db: Database, job_ids: list[int], status: str) -> None:
    with db.write() as conn:
        conn.execute(text(LOCK_TIMEOUT))
        conn.execute(update(jobs).where(jobs.c.job_id.in_(job_ids)).values(status=status))


def test_writers_of_two_keys_in_opposite_orders_do_not_deadlock(db: Database) -> None:
    """Two transactions (two pilots' heartbeats) each start a job of owner A and one of
    owner B, in opposite orders, each holding its first change while making its second.
    With a counter row per key each would wait for the other's row: PostgreSQL aborts one
    ("deadlock detected"). With deltas both go through, at once."""
    with db.write() as conn:
        a, b = add_jobs(conn, "alice", 2), add_jobs(conn, "bob", 2)
    both_halfway = threading.Barrier(2, timeout=DEADLINE_S / 2)

    def in_order(first: int, second: int) -> Callable[[], None]:
        def change() -> None:
            with db.write() as conn:
                conn.execute(text(LOCK_TIMEOUT))
                for job_id in (first, second):
                    conn.execute(update(jobs).where(jobs.c.job_id == job_id)
                                 .values(status="Running"))  # fmt: skip
                    if job_id == first:
                        both_halfway.wait()

        return change

    began = time.monotonic()
    assert run_all(in_order(a[0], b[0]), in_order(b[1], a[1])) == []
    assert time.monotonic() - began < 5.0  # neither waited for a lock (lock_timeout 5 s)
    with db.read() as conn:
        assert rollup_is_true(conn)
        statuses = conn.execute(text("SELECT status, COUNT(*) FROM jobs GROUP BY status"))
        assert dict(statuses.all()) == {"Running": 4}


def test_a_writer_does_not_wait_for_another_writer_of_the_same_counts(db: Database) -> None:
    """Two matches of one owner's jobs on two replicas: the second need not wait for the
    first to commit (the ``(owner, Waiting)`` count is not a row both update)."""
    with db.write() as conn:
        first, second = add_jobs(conn, "alice", 2)
    holding = threading.Event()
    done = threading.Event()

    def first_match() -> None:
        with db.write() as conn:
            conn.execute(text(LOCK_TIMEOUT))
            conn.execute(update(jobs).where(jobs.c.job_id == first).values(status="Matched"))
            holding.set()
            assert done.wait(DEADLINE_S / 2)  # still open while the other one runs

    def second_match() -> None:
        try:
            assert holding.wait(DEADLINE_S / 2)
            start(db, [second], "Matched")  # lock_timeout: fails if it has to wait
        finally:
            done.set()

    assert run_all(first_match, second_match) == []
    with db.read() as conn:
        assert rollup_is_true(conn)


def test_folding_while_jobs_change_loses_nothing(db: Database) -> None:
    """Two writers change, add and delete jobs of the same owners while one thread folds
    the deltas and another compares the counts with the jobs in one snapshot each time:
    every snapshot agrees, and after the last fold ``job_counts`` alone does."""
    owners = ("alice", "bob", "carol")
    with db.write() as conn:
        mine = [[j for owner in owners for j in add_jobs(conn, owner, 10)] for _ in range(2)]
    writing = threading.Event()
    writing.set()
    folds: list[int] = []
    checks: list[bool] = []

    def writer(seed: int) -> Callable[[], None]:
        def write() -> None:
            rng, owned = random.Random(seed), mine[seed]
            for _ in range(80):
                with db.write() as conn:
                    conn.execute(text(LOCK_TIMEOUT))
                    for job_id in rng.sample(owned, 3):
                        status = rng.choice(["Matched", "Running", "Done", "Killed"])
                        conn.execute(update(jobs).where(jobs.c.job_id == job_id)
                                     .values(status=status))  # fmt: skip
                    owned.extend(add_jobs(conn, rng.choice(owners), rng.randint(1, 3)))
                    gone = owned.pop(rng.randrange(len(owned)))
                    conn.execute(delete(jobs).where(jobs.c.job_id == gone))

        return write

    def folder() -> None:
        while writing.is_set():
            with db.write() as conn:
                folds.append(rollup.compact(conn))
            time.sleep(0.005)

    def checker() -> None:
        while writing.is_set():
            with db.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    checks.append(rollup_is_true(conn))

    def writers() -> None:
        try:
            assert run_all(writer(0), writer(1)) == []
        finally:
            writing.clear()

    assert run_all(writers, folder, checker) == []
    assert checks and all(checks), checks.count(False)
    assert sum(1 for n in folds if n) >= 2  # folded while the writers wrote
    with db.write() as conn:
        rollup.compact(conn)
    with db.read() as conn:
        kept = conn.execute(text(f"SELECT {KEY}, n FROM job_counts ORDER BY {KEY}"))
        assert kept.all() == conn.execute(text(COUNTED)).all()
        assert conn.execute(text("SELECT COUNT(*) FROM job_count_deltas")).scalar() == 0


def test_one_replica_folds_at_a_time(db: Database) -> None:
    """A fold while another one is in progress skips its turn instead of waiting; what it
    left is folded next time, and keys no job has any more are forgotten."""
    with db.write() as conn:
        add_jobs(conn, "alice", 3)
        conn.execute(text("UPDATE jobs SET status = 'Done'"))
    with db.write() as first:
        assert rollup.compact(first) == 1 + 3 * 2  # the insert's +3; a -1 and +1 per job
        with db.write() as conn:
            add_jobs(conn, "bob", 1)
        with db.write() as second:
            assert rollup.compact(second) == 0
    with db.write() as conn:
        assert rollup.compact(conn) == 1
    with db.read() as conn:
        kept = conn.execute(text("SELECT owner, status, n FROM job_counts ORDER BY owner"))
        assert kept.all() == [("alice", "Done", 3), ("bob", "Waiting", 1)]


def test_the_coordinators_sweepers_fold_the_deltas(db: Database, tmp_path: Path) -> None:
    """Two coordinators on the database: their sweepers fold what writers left (whichever
    takes the lock), and the counts stay those of the jobs."""
    with db.write() as conn:
        add_jobs(conn, "alice", 4)
        conn.execute(text("UPDATE jobs SET status = 'Killed' WHERE job_id % 2 = 0"))
    coordinators = [
        launch_coordinator(tmp_path / name, database_url=db.url, sweep_interval_s=0.2)
        for name in ("one", "two")
    ]
    try:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            with db.read() as conn:
                left = conn.execute(text("SELECT COUNT(*) FROM job_count_deltas")).scalar()
            if left == 0:
                break
            time.sleep(0.1)
        with db.read() as conn:
            kept = conn.execute(text(f"SELECT {KEY}, n FROM job_counts ORDER BY {KEY}"))
            assert kept.all() == conn.execute(text(COUNTED)).all()
        assert left == 0
    finally:
        for coordinator in coordinators:
            coordinator.process.terminate()
        for coordinator in coordinators:
            coordinator.process.wait(timeout=30)
            assert "Traceback" not in coordinator.log(), coordinator.log()
