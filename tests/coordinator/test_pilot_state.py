"""``POST /api/v1/pilots/{id}/state``: a pilot stops (or resumes) taking work, and why."""

from __future__ import annotations

import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User


def _set_state(pilot: FakePilot, **body: object) -> requests.Response:
    return requests.post(
        pilot.coord.api(f"/pilots/{pilot.pilot_id}/state"), json=body, headers=pilot.headers()
    )


def test_a_pilot_that_stops_taking_work_gets_no_job_until_it_resumes(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (job_id,) = user.submit()
    check = {"name": "disk", "status": "fail", "message": "gone", "fatal": True}
    reason = "fatal check disk failed: gone"
    reply = _set_state(pilot, accepting_work=False, reason=reason, checks=[check])
    assert reply.status_code == 204, reply.text
    assert pilot.match() == []
    record = user.get(f"/pilots/{pilot.pilot_id}").json()
    assert (record["accepting_work"], record["refuse_reason"]) == (False, reason)
    assert [c["status"] for c in record["checks"] if c["name"] == "disk"] == ["fail"]

    assert _set_state(pilot, accepting_work=True).status_code == 204
    assert pilot.match() == [job_id]


def test_only_the_pilots_own_token_may_change_its_state(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    pilot = FakePilot(shared_coordinator, vo)
    other = FakePilot(shared_coordinator, vo, subject="another-factory")
    reply = requests.post(
        shared_coordinator.api(f"/pilots/{pilot.pilot_id}/state"),
        json={"accepting_work": False, "reason": "not yours"},
        headers=other.headers(),
    )
    assert reply.status_code == 404
    assert reply.json()["code"] == "not_found"
    user = User(shared_coordinator, vo)
    record = user.get(f"/pilots/{pilot.pilot_id}").json()
    assert record["accepting_work"] is True
    bad = _set_state(pilot, accepting_work="maybe")
    assert bad.status_code == 400
