"""The hot path's one-statement claim on PostgreSQL, where claims run side by side: two
engines stand for two replicas (each with its own task-queue index), the matchmaker and the
store run in this process on a real PostgreSQL database. Whatever ``--database`` says: this
is the PostgreSQL variant of the claim (``FOR UPDATE SKIP LOCKED`` in its inner select)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from coordinator.logic import jobs, matchmaker, pilots
from coordinator.logic.auth import TokenClaims
from coordinator.logic.queue_index import QueueIndex
from coordinator.metrics import Metrics
from coordinator.settings import Settings
from coordinator.store import revisions
from coordinator.store import taskqueues as tq_store
from coordinator.store.database import Database
from coordinator.store.schema import utc_timestamp
from protocol import MatchRequest, PilotRegistration, Role, SubmitRequest
from tests.conftest import DATABASES

DEADLINE_S = 60.0
WAIT_S = 10.0
"""Far longer than a claim takes; far shorter than the statement timeout a wait ends at."""


def claims(subject: str, role: Role) -> TokenClaims:
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    return TokenClaims(subject, "vo1", role, "", expires, f"id-{subject}")


PILOT = claims("factory", Role.PILOT)


class Replica:
    """What one coordinator process holds: an engine and a queue index."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.index = QueueIndex()

    def match(self, pilot_id: str, n: int) -> list[int]:
        request = MatchRequest(n=n, cores_free=n)
        reply = matchmaker.match(
            self.db, self.settings, Metrics(), PILOT, pilot_id, request, self.index
        )
        return [job.job_id for job in reply.jobs]


@pytest.fixture
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Replica]]:
    data_dir = tmp_path_factory.mktemp("claims")
    url = DATABASES.postgres_url(str(data_dir))
    settings = Settings(data_dir=data_dir, database_url=url)
    made = [Replica(settings), Replica(settings)]
    revisions.check(made[0].db)
    yield made
    for replica in made:
        replica.db.dispose()


def submit(replica: Replica, copies: int) -> list[int]:
    description = {"Executable": "/bin/true", "Parameters": copies}
    request = SubmitRequest(description=json.dumps(description), format="json")
    return jobs.submit(replica.db, replica.settings, claims("alice", Role.USER), request)


def register(replica: Replica) -> str:
    body = PilotRegistration(hostname="wn", pilot_version="x")
    return pilots.register(replica.db, replica.settings, PILOT, body).pilot_id


def test_the_claim_is_postgresqls_own(replicas: list[Replica]) -> None:
    with replicas[0].db.read() as conn:
        assert conn.dialect.name == "postgresql"


def test_a_claim_in_flight_is_skipped_not_waited_for(replicas: list[Replica]) -> None:
    first, second = replicas
    job_ids = submit(first, 6)
    pilot = register(first)
    with first.db.read() as conn:
        queue_ids = [int(q["task_queue_id"]) for q in tq_store.queues_of_vo(conn, "vo1")]
    with first.db.write() as conn:
        held = tq_store.claim_waiting(
            conn, queue_ids, 3, pilot_id=pilot, site="", now=utc_timestamp()
        )
        assert [row["job_id"] for row in held] == job_ids[:3]
        # The first claim has not committed: the other replica takes the next jobs at once,
        # instead of waiting on the rows held (then finding them taken).
        found: list[list[int]] = []
        other = threading.Thread(target=lambda: found.append(second.match(pilot, 3)), daemon=True)
        other.start()
        other.join(WAIT_S)
        assert not other.is_alive(), "the second claim waited for the first"
        assert found == [job_ids[3:]]
    assert second.match(pilot, 3) == []  # all six taken; nothing given twice


def test_concurrent_matches_on_two_replicas_give_every_job_once(
    replicas: list[Replica],
) -> None:
    job_ids = submit(replicas[0], 300)
    pilot_ids = [register(replicas[i % 2]) for i in range(8)]
    taken: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def pilot_loop(replica: Replica, pilot_id: str) -> None:
        try:
            empty = 0
            while empty < 2:  # a short claim marks queues dry: the next match reloads
                got = replica.match(pilot_id, 3)
                empty = 0 if got else empty + 1
                with lock:
                    taken.extend(got)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=pilot_loop, args=(replicas[i % 2], pilot_id), daemon=True)
        for i, pilot_id in enumerate(pilot_ids)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert not any(thread.is_alive() for thread in threads), "matching did not finish"
    assert not errors, errors
    assert len(taken) == len(set(taken))  # none given twice
    assert sorted(taken) == sorted(job_ids)  # none left behind
    with replicas[0].db.read() as conn:
        matched_twice = conn.execute(
            text(
                "SELECT job_id FROM job_history WHERE status = 'Matched' "
                "GROUP BY job_id HAVING count(*) > 1"
            )
        ).all()
    assert matched_twice == []
