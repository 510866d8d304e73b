"""What one explanation costs does not grow with the jobs waiting (issue 17: "no per-explain
scan of all jobs").

In-process, on the real store (a temporary SQLite file): the same explanation asked of the
newest job of one task queue holding 10, 2,000 and 10,000 Waiting jobs, with every SQL
statement SQLite runs counted (its trace callback: Core's statements and precompiled ones
alike) and the work it does measured in virtual machine steps (its progress handler, called
every ``STEP`` instructions). Rows read show there: counting the whole queue (the code before
this test) took 5 times the steps at 10,000 jobs as at 2,000.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import event

from coordinator.logic import explanations, jobs, matchmaker, pilots
from coordinator.logic.auth import TokenClaims
from coordinator.metrics import Metrics
from coordinator.settings import Settings
from coordinator.store import revisions
from coordinator.store.database import Database
from coordinator.store.taskqueues import QUEUE_COUNT_LIMIT
from protocol import JobExplanation, MatchRequest, PilotRegistration, Role, SubmitRequest

STEP = 100
"""SQLite instructions between two calls of the progress handler."""


def claims(subject: str, role: Role) -> TokenClaims:
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    return TokenClaims(subject, "vo1", role, "", expires, f"id-{subject}")


class Cost:
    """Statements and SQLite steps of what runs inside ``measure``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.statements = 0
        self.steps = 0
        self._on = False
        event.listen(db.engine, "checkout", self._checkout)

    def _statement(self, sql: str) -> None:
        self.statements += self._on

    def _step(self) -> int:
        self.steps += self._on
        return 0  # go on

    def _checkout(self, dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.set_progress_handler(self._step, STEP)
        dbapi_connection.set_trace_callback(self._statement)

    @contextmanager
    def measure(self) -> Iterator[None]:
        self.statements = self.steps = 0
        self._on = True
        try:
            yield
        finally:
            self._on = False


def test_explaining_a_job_costs_the_same_with_10_or_10000_jobs_waiting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.database_url)
    revisions.upgrade(db)
    alice = claims("alice", Role.USER)
    factory = claims("factory", Role.PILOT)
    # A pilot that asked for work and was refused: the job names another site.
    registration = PilotRegistration(hostname="wn", pilot_version="x", site="SITE-B", cores=8)
    pilot_id = pilots.register(db, settings, factory, registration).pilot_id

    def submit(copies: int) -> int:
        description = {"Executable": "/bin/true", "Site": "SITE-A", "Parameters": copies}
        request = SubmitRequest(description=json.dumps(description), format="json")
        return max(jobs.submit(db, settings, alice, request))

    def explain(job_id: int) -> tuple[JobExplanation, int, int]:
        with cost.measure():
            found = explanations.explain_job(db, settings, alice, job_id)
        return found, cost.statements, cost.steps

    cost = Cost(db)
    newest = submit(10)
    reply = matchmaker.match(
        db, settings, Metrics(), factory, pilot_id, MatchRequest(n=1, cores_free=8)
    )
    assert reply.jobs == []
    few, few_statements, few_steps = explain(newest)
    assert (few.pilots_seen, few.excluded_by) == (1, ["site"])
    assert (few.queue_position, few.queue_waiting, few.queue_count_limit) == (10, 10, 0)

    newest = submit(1990)
    some, some_statements, some_steps = explain(newest)
    newest = submit(8000)
    many, many_statements, many_steps = explain(newest)

    assert few_statements == some_statements == many_statements
    assert many.task_queue_id == some.task_queue_id == few.task_queue_id
    limit = QUEUE_COUNT_LIMIT
    assert (many.queue_position, many.queue_waiting, many.queue_count_limit) == (
        limit + 1,
        limit,
        limit,
    )
    # Past the counting limit the work stays put: 10,000 jobs cost what 2,000 do.
    assert many_steps <= some_steps * 1.1 + 10, (few_steps, some_steps, many_steps)
