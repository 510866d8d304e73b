"""The task queues kept in memory are a hint: the claim in the database decides.

Two ``QueueIndex`` objects over one database (SQLite, or PostgreSQL with ``--database
postgresql``) stand for two coordinator replicas (each keeps its own); the matchmaker runs
in this process, on the real store, with only the index's clock injected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from coordinator.logic import jobs, matchmaker, pilots
from coordinator.logic.auth import TokenClaims
from coordinator.logic.queue_index import REFRESH_S, QueueIndex
from coordinator.metrics import Metrics
from coordinator.settings import Settings
from coordinator.store import revisions
from coordinator.store.database import Database
from protocol import MatchRequest, PilotRegistration, Role, SubmitRequest


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def claims(subject: str, role: Role) -> TokenClaims:
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    return TokenClaims(subject, "vo1", role, "", expires, f"id-{subject}")


class World:
    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.settings = Settings(data_dir=tmp_path, database_url=database_url)
        self.db = Database(self.settings.database_url)
        revisions.check(self.db)
        self.pilot_claims = claims("factory", Role.PILOT)

    def submit(self, copies: int, **attributes: object) -> list[int]:
        description = {"Executable": "/bin/true", "Parameters": copies, **attributes}
        request = SubmitRequest(description=json.dumps(description), format="json")
        return jobs.submit(self.db, self.settings, claims("alice", Role.USER), request)

    def pilot(self, **registration: object) -> str:
        body = PilotRegistration(hostname="wn", pilot_version="x", **registration)  # type: ignore[arg-type]
        return pilots.register(self.db, self.settings, self.pilot_claims, body).pilot_id

    def match(self, pilot_id: str, index: QueueIndex, n: int = 1, **offer: object) -> list[int]:
        request = MatchRequest(n=n, cores_free=n, **offer)  # type: ignore[arg-type]
        reply = matchmaker.match(
            self.db, self.settings, Metrics(), self.pilot_claims, pilot_id, request, index
        )
        return [job.job_id for job in reply.jobs]


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    made = World(tmp_path, database_url)
    yield made
    made.db.dispose()


def test_two_replicas_with_their_own_index_give_every_job_once(world: World) -> None:
    plain, gpu = world.submit(30), world.submit(30, Tags=["GPU"])
    first, second = QueueIndex(), QueueIndex()
    pilot = world.pilot(tags=["GPU"])
    taken: list[int] = []
    while True:
        got = world.match(pilot, first, n=4) + world.match(pilot, second, n=3)
        if not got:
            break
        taken += got
    assert sorted(taken) == sorted(plain + gpu)  # each once, none lost to a stale view


def test_a_queue_made_after_the_index_was_loaded_is_found(world: World) -> None:
    clock = Clock()
    index = QueueIndex(clock)
    old = world.submit(5, Site="SITE-A")
    at_a = world.pilot(site="SITE-A")
    assert world.match(at_a, index) == old[:1]  # the index holds the one queue now
    gpu = world.submit(2, Tags=["GPU"])  # a queue the index does not know
    # Nothing the index knows fits this pilot: it reloads before answering "no job".
    at_b = world.pilot(site="SITE-B", tags=["GPU"])
    assert world.match(at_b, index) == gpu[:1]
    urgent = world.submit(2, Site="SITE-A", CPUTime=100, Priority=9)  # unknown again
    # A pilot that has work in the queues it knows gets that work: the cost of a stale view.
    assert world.match(at_a, index) == old[1:2]
    clock.now_s += REFRESH_S
    assert world.match(at_a, index, n=2) == urgent  # seen at the refresh, Priority 9 first
