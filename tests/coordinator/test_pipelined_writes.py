"""The hot path's pipelined write transactions (``Database.write(pipelined=True)``).

On PostgreSQL their statements go out in psycopg's pipeline mode, with a ``BEGIN`` and a
``COMMIT`` of our own, and writes sent without waiting (``Precompiled.send``) report their
errors later; on SQLite the flag changes nothing. Either way a transaction must stay one:
all of it or none of it, each read answered with its own rows, and the connection fit for
the next request. Run on both databases (``--database postgresql``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from coordinator.logic import jobs, pilots
from coordinator.settings import Settings
from coordinator.store import jobs as job_store
from coordinator.store import pilots as pilot_store
from coordinator.store import requests as request_store
from coordinator.store import revisions
from coordinator.store.database import Database
from coordinator.store.schema import jobs as jobs_table
from protocol import JobStatus, PilotRegistration, Role, SubmitRequest
from tests.coordinator.test_queue_index import claims


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[tuple[Database, Settings]]:
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    database = Database(settings.database_url)
    revisions.check(database)
    yield database, settings
    database.dispose()


def _pilot(database: Database, settings: Settings) -> str:
    body = PilotRegistration(hostname="wn", pilot_version="x")
    return pilots.register(database, settings, claims("factory", Role.PILOT), body).pilot_id


def _submit(database: Database, settings: Settings, copies: int) -> list[int]:
    description = {"Executable": "/bin/true", "Parameters": copies}
    request = SubmitRequest(description=json.dumps(description), format="json")
    return jobs.submit(database, settings, claims("alice", Role.USER), request)


def _integrity_errors(database: Database) -> tuple[type[BaseException], ...]:
    """SQLAlchemy's, and the driver's own (the precompiled statements run on the DBAPI)."""
    return (IntegrityError, database.engine.dialect.loaded_dbapi.IntegrityError)


def test_a_write_sent_without_waiting_that_fails_undoes_the_whole_transaction(
    db: tuple[Database, Settings],
) -> None:
    database, settings = db
    pilot_id = _pilot(database, settings)
    (job_id,) = _submit(database, settings, 1)
    with pytest.raises(_integrity_errors(database)), database.write(pipelined=True) as conn:
        job_store.change_status(
            conn,
            job_id,
            expected=JobStatus.WAITING,
            status=JobStatus.KILLED,
            minor_status="by the test",
            application_status="",
            source="test",
        )
        pilot_store.touch_pilot(conn, pilot_id, '{"jobs": 1}')
        request_store.remember(conn, pilot_id, "r1", request_store.MATCH, [job_id])
        # The same request id again: a duplicate key, which PostgreSQL reports only
        # with the commit here.
        request_store.remember(conn, pilot_id, "r1", request_store.MATCH, [])
    with database.read() as conn:
        assert request_store.recall(conn, pilot_id, "r1", request_store.MATCH) is None
        row = job_store.get_job(conn, job_id)
        assert row is not None and row["status"] == JobStatus.WAITING.value
        pilot = pilot_store.get_pilot(conn, pilot_id)
        assert pilot is not None and pilot["last_match"] == "{}"

    # The connection went back to the pool fit for use: the next transaction commits.
    with database.write(pipelined=True) as conn:
        request_store.remember(conn, pilot_id, "r1", request_store.MATCH, [job_id])
    with database.read() as conn:
        assert request_store.recall(conn, pilot_id, "r1", request_store.MATCH) == [job_id]


def test_reads_sent_together_each_get_their_own_rows(db: tuple[Database, Settings]) -> None:
    database, settings = db
    pilot_id = _pilot(database, settings)
    job_ids = _submit(database, settings, 3)
    with database.write(pipelined=True) as conn:
        request_store.remember(conn, pilot_id, "r2", request_store.MATCH, job_ids[:1])
        pilot = pilot_store.get_pilot_later(conn, pilot_id, lock=True)
        found = job_store.get_jobs_later(conn, job_ids, lock=True)
        earlier = request_store.recall_later(conn, pilot_id, "r2", request_store.MATCH)
        missing = pilot_store.get_pilot_later(conn, "no-such-pilot")
        # A statement SQLAlchemy runs itself, between them, reads its own result too.
        waiting = conn.execute(
            select(func.count()).where(jobs_table.c.status == JobStatus.WAITING.value)
        ).scalar_one()
        assert missing() is None
        assert earlier() == job_ids[:1]
        assert [row["job_id"] for row in found()] == job_ids
        row = pilot()
        assert row is not None and row["pilot_id"] == pilot_id
        assert waiting == 3
        # A write whose row count is read waits for it: only the expected status changes.
        kill = {
            "status": JobStatus.KILLED,
            "minor_status": "",
            "application_status": "",
            "source": "test",
        }
        assert not job_store.change_status(conn, job_ids[0], expected=JobStatus.RUNNING, **kill)
        assert job_store.change_status(conn, job_ids[0], expected=JobStatus.WAITING, **kill)
