"""Match and status reports are idempotent by the pilot's request id (issue 12, item 8).

A reply cut on its way back makes the pilot send the same request again with the same
``request_id``: a retried match gets the very jobs the first one claimed (and claims no
others), a retried report changes nothing. Real coordinator, plain HTTP.
"""

from __future__ import annotations

from typing import Any

import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User


def match(pilot: FakePilot, request_id: str, n: int = 2) -> list[dict[str, Any]]:
    reply = requests.post(
        pilot.coord.api(f"/pilots/{pilot.pilot_id}/match"),
        json={"n": n, "cores_free": n, "request_id": request_id},
        headers=pilot.headers(),
    )
    assert reply.status_code == 200, reply.text
    jobs: list[dict[str, Any]] = reply.json()["jobs"]
    return jobs


def test_retried_match_gets_the_same_jobs_and_claims_no_more(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    submitted = user.submit(Parameters=5)
    first = match(pilot, "match-1")
    again = match(pilot, "match-1")
    assert [job["job_id"] for job in again] == [job["job_id"] for job in first]
    assert again == first  # the whole assignment, cores included
    assert len(first) == 2
    statuses = [user.job(job_id)["status"] for job_id in submitted]
    assert statuses.count("Matched") == 2 and statuses.count("Waiting") == 3
    matched = [entry for entry in user.history(first[0]["job_id"]) if entry[0] == "Matched"]
    assert len(matched) == 1  # matched once, not once per retry
    fresh = match(pilot, "match-2")
    assert {job["job_id"] for job in fresh}.isdisjoint(job["job_id"] for job in first)


def test_retried_match_leaves_out_jobs_that_moved_on(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    user.submit(Parameters=2)
    first = match(pilot, "match-a")
    assert pilot.report(first[0]["job_id"], "Running").status_code == 200
    again = match(pilot, "match-a")
    assert [job["job_id"] for job in again] == [first[1]["job_id"]]


def test_empty_match_is_remembered_too(shared_coordinator: RunningCoordinator, vo: str) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    assert match(pilot, "nothing-yet") == []
    user.submit()
    assert match(pilot, "nothing-yet") == []  # a retry of the empty answer claims nothing
    assert len(match(pilot, "next-request")) == 1


def test_retried_report_is_a_no_op(shared_coordinator: RunningCoordinator, vo: str) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (job_id,) = user.submit()
    (job,) = match(pilot, "m")
    for _ in range(2):
        reply = pilot.report(job_id, "Running", request_id="start-1")
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] == "Running"
    done = {"exit_code": 0, "minor_status": "Execution Complete", "request_id": "final-1"}
    for _ in range(2):
        assert pilot.report(job_id, "Done", **done).status_code == 200
    statuses = [entry[0] for entry in user.history(job_id)]
    assert statuses.count("Running") == 1 and statuses.count("Done") == 1
    assert job["job_id"] == job_id


def test_retried_infrastructure_failure_is_not_refused_after_the_reschedule(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    """The first report rescheduled the job (it is nobody's now): its retry is answered
    with the job as it is, not with a lease-lost refusal."""
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (job_id,) = user.submit()
    match(pilot, "m")
    failed = {"infrastructure_error": True, "minor_status": "Runtime Failure", "request_id": "f"}
    first = pilot.report(job_id, "Failed", **failed)
    again = pilot.report(job_id, "Failed", **failed)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()["status"] == "Waiting" and again.json()["reschedule_count"] == 1
    without_id = pilot.report(job_id, "Failed", minor_status="Runtime Failure")
    assert without_id.status_code == 409  # as before: the job is not this pilot's any more


def test_request_ids_are_checked(shared_coordinator: RunningCoordinator, vo: str) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (job_id,) = user.submit(Parameters=2)[:1]
    reply = requests.post(
        pilot.coord.api(f"/pilots/{pilot.pilot_id}/match"),
        json={"n": 1, "cores_free": 1, "request_id": "x" * 65},
        headers=pilot.headers(),
    )
    assert reply.status_code == 400
    assert reply.json()["code"] == "bad_request"
    first, second = (job["job_id"] for job in match(pilot, "two"))
    assert pilot.report(first, "Running", request_id="same").status_code == 200
    reused = pilot.report(second, "Running", request_id="same")
    assert reused.status_code == 400
    assert "was used for another job" in reused.json()["message"]
    assert user.job(second)["status"] == "Matched"
    assert job_id in (first, second)


def test_other_pilots_cannot_replay_a_pilots_match(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user = User(shared_coordinator, vo)
    owner, other = FakePilot(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    user.submit(Parameters=2)
    taken = match(owner, "shared-id", n=1)
    assert [job["job_id"] for job in match(other, "shared-id", n=1)] != [
        job["job_id"] for job in taken
    ]  # ids are per pilot: the same id from another pilot is its own request
