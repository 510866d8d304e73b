"""A coordinator whose PostgreSQL goes away answers 503 with the error body, on the hot
path (whose statements run on the DBAPI cursor, so psycopg's own exceptions reach the
answer unwrapped by SQLAlchemy) as on FastAPI's routes, and serves again once it is back."""

from __future__ import annotations

import time
from typing import Callable

import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User
from tests.services.postgres import PostgresCluster, wait_accepting


def test_requests_meeting_a_stopped_database_are_answered_503_and_served_after(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    cluster = PostgresCluster()
    cluster.start()
    try:
        coord = start_coordinator(database_url=cluster.create_database("outage"))
        user = User(coord, "vo1")
        (job_id,) = user.submit()
        pilot = FakePilot(coord, "vo1")
        cluster.stop("fast")  # every pooled connection is cut
        match = requests.post(
            coord.api(f"/pilots/{pilot.pilot_id}/match"),
            json={"n": 1, "cores_free": 1},
            headers=pilot.headers(),
            timeout=30,
        )
        status = requests.get(coord.api(f"/jobs/{job_id}"), headers=user.headers(), timeout=30)
        for reply in (match, status):
            assert reply.status_code == 503, reply.text
            assert reply.json()["code"] == "unavailable"
            assert "Retry-After" in reply.headers
        assert "unhandled error" not in coord.log()
        cluster.start()
        wait_accepting(cluster)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the pool notices the restart on its next use
            jobs = requests.post(
                coord.api(f"/pilots/{pilot.pilot_id}/match"),
                json={"n": 1, "cores_free": 1},
                headers=pilot.headers(),
                timeout=30,
            )
            if jobs.status_code == 200:
                break
            assert jobs.status_code == 503, jobs.text
            time.sleep(0.2)
        assert [job["job_id"] for job in jobs.json()["jobs"]] == [job_id]
    finally:
        cluster.stop("immediate")
