"""Match and status reports are idempotent by the pilot's request id (issue 12, item 8).

A reply cut on its way back makes the pilot send the same request again with the same
``request_id``: a retried match gets the very jobs the first one claimed (and claims no
others), a retried report changes nothing. Real coordinator, plain HTTP; every test runs
twice, once through the hot path (``coordinator.api.hotpath``, what a pilot's requests
take) and once through FastAPI (a chunked body, which the hot path hands on), and checks
from ``/metrics`` that the lane it meant served it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User
from tests.coordinator.test_hotpath import chunked, served_by_hot_path

LANES = ("hot", "fastapi")


@pytest.fixture(params=LANES)
def lane(request: pytest.FixtureRequest, shared_coordinator: RunningCoordinator) -> Iterator[str]:
    """Which lane the pilot's requests take; checked at the end by the hot path's count."""
    before = served_by_hot_path(shared_coordinator, "match")
    before += served_by_hot_path(shared_coordinator, "job_status")
    yield str(request.param)
    after = served_by_hot_path(shared_coordinator, "match")
    after += served_by_hot_path(shared_coordinator, "job_status")
    assert (after > before) == (request.param == "hot")


def post(lane: str, url: str, body: Any, headers: dict[str, str]) -> requests.Response:
    """POST ``body`` as a pilot does (the hot path serves it) or chunked (FastAPI does)."""
    json_headers = {**headers, "Content-Type": "application/json"}
    data = json.dumps(body).encode() if lane == "hot" else chunked(body)
    return requests.post(url, data=data, headers=json_headers, timeout=30)


class Pilot(FakePilot):
    """A hand-driven pilot whose match and reports take one lane."""

    def __init__(self, coord: RunningCoordinator, vo: str, lane: str, **reg: Any) -> None:
        super().__init__(coord, vo, **reg)
        self.lane = lane

    def report(self, job_id: int, status: str, **update: Any) -> requests.Response:
        url = self.coord.api(f"/jobs/{job_id}/status")
        return post(self.lane, url, {"status": status, **update}, self.job_headers())


def match(pilot: Pilot, request_id: str, n: int = 2, **request: Any) -> list[dict[str, Any]]:
    url = pilot.coord.api(f"/pilots/{pilot.pilot_id}/match")
    body = {"n": n, "cores_free": n, "request_id": request_id, **request}
    reply = post(pilot.lane, url, body, pilot.headers())
    assert reply.status_code == 200, reply.text
    jobs: list[dict[str, Any]] = reply.json()["jobs"]
    return jobs


def test_retried_match_gets_the_same_jobs_and_claims_no_more(
    shared_coordinator: RunningCoordinator, vo: str, lane: str
) -> None:
    user, pilot = User(shared_coordinator, vo), Pilot(shared_coordinator, vo, lane)
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
    shared_coordinator: RunningCoordinator, vo: str, lane: str
) -> None:
    user, pilot = User(shared_coordinator, vo), Pilot(shared_coordinator, vo, lane)
    user.submit(Parameters=2)
    first = match(pilot, "match-a")
    assert pilot.report(first[0]["job_id"], "Running").status_code == 200
    again = match(pilot, "match-a")
    assert [job["job_id"] for job in again] == [first[1]["job_id"]]


def test_retried_match_gives_the_same_gpus_and_whole_node(
    shared_coordinator: RunningCoordinator, vo: str, lane: str
) -> None:
    """A k-job match's retry gives every job the GPUs (by id) and cores it got the first
    time, whatever the retry offers, and no GPU twice; a whole-node job stays one."""
    coord, user = shared_coordinator, User(shared_coordinator, vo)
    (pair,) = user.submit(NumberOfGPUs=2)
    singles = user.submit(NumberOfGPUs=1, Parameters=2)
    pilot = Pilot(coord, vo, lane, cores=8, tags=["GPU"])
    gpus = [{"id": str(i), "model": "Tesla T4", "memory_mb": 15360} for i in range(4)]
    first = match(pilot, "gpus-1", n=8, cores_free=8, gpus_free=gpus)
    given = {job["job_id"]: job["gpus"] for job in first}
    assert set(given) == {pair, *singles}
    assert len(given[pair]) == 2 and all(len(given[job]) == 1 for job in singles)
    assert sorted(gpu for ids in given.values() for gpu in ids) == ["0", "1", "2", "3"]
    # The retry offers other GPUs (as a pilot whose jobs ended meanwhile might): no matter.
    again = match(pilot, "gpus-1", n=8, cores_free=8, gpus_free=list(reversed(gpus)))
    assert again == first
    (whole,) = user.submit(WholeNode="yes")
    node = Pilot(coord, vo, lane, cores=6)
    [got] = match(node, "whole-1", n=2, cores_free=6)
    assert (got["job_id"], got["cores"], got["whole_node"]) == (whole, 6, True)
    assert match(node, "whole-1", n=2, cores_free=1) == [got]


def test_empty_match_is_remembered_too(
    shared_coordinator: RunningCoordinator, vo: str, lane: str
) -> None:
    user, pilot = User(shared_coordinator, vo), Pilot(shared_coordinator, vo, lane)
    assert match(pilot, "nothing-yet") == []
    user.submit()
    assert match(pilot, "nothing-yet") == []  # a retry of the empty answer claims nothing
    assert len(match(pilot, "next-request")) == 1


def test_retried_report_is_a_no_op(
    shared_coordinator: RunningCoordinator, vo: str, lane: str
) -> None:
    user, pilot = User(shared_coordinator, vo), Pilot(shared_coordinator, vo, lane)
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
    shared_coordinator: RunningCoordinator, vo: str, lane: str
) -> None:
    """The first report rescheduled the job (it is nobody's now): its retry is answered
    with the job as it is, not with a lease-lost refusal."""
    user, pilot = User(shared_coordinator, vo), Pilot(shared_coordinator, vo, lane)
    (job_id,) = user.submit()
    match(pilot, "m")
    failed = {"infrastructure_error": True, "minor_status": "Runtime Failure", "request_id": "f"}
    first = pilot.report(job_id, "Failed", **failed)
    again = pilot.report(job_id, "Failed", **failed)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()["status"] == "Waiting" and again.json()["reschedule_count"] == 1
    without_id = pilot.report(job_id, "Failed", minor_status="Runtime Failure")
    assert without_id.status_code == 409  # as before: the job is not this pilot's any more


def test_request_ids_are_checked(
    shared_coordinator: RunningCoordinator, vo: str, lane: str
) -> None:
    user, pilot = User(shared_coordinator, vo), Pilot(shared_coordinator, vo, lane)
    (job_id,) = user.submit(Parameters=2)[:1]
    url = pilot.coord.api(f"/pilots/{pilot.pilot_id}/match")
    reply = post(lane, url, {"n": 1, "cores_free": 1, "request_id": "x" * 65}, pilot.headers())
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
    shared_coordinator: RunningCoordinator, vo: str, lane: str
) -> None:
    user = User(shared_coordinator, vo)
    owner, other = Pilot(shared_coordinator, vo, lane), Pilot(shared_coordinator, vo, lane)
    user.submit(Parameters=2)
    taken = match(owner, "shared-id", n=1)
    assert [job["job_id"] for job in match(other, "shared-id", n=1)] != [
        job["job_id"] for job in taken
    ]  # ids are per pilot: the same id from another pilot is its own request


def test_a_final_report_carrying_the_start_is_applied_once(
    shared_coordinator: RunningCoordinator, vo: str, lane: str
) -> None:
    """``running_in_heartbeat``: a job of a k-job match whose payload ended before its
    start rode a heartbeat; its final report (``started``) is retried after a lost reply:
    Running and Done once each, the other jobs of the match untouched."""
    user, pilot = User(shared_coordinator, vo), Pilot(shared_coordinator, vo, lane)
    user.submit(Parameters=3)
    first = match(pilot, "k3", n=3)
    assert len(first) == 3 and match(pilot, "k3", n=3) == first
    job_id = first[1]["job_id"]
    done = {"exit_code": 0, "started": True, "request_id": "final-k"}
    replies = [pilot.report(job_id, "Done", **done) for _ in range(3)]
    assert [reply.status_code for reply in replies] == [200, 200, 200], replies[-1].text
    assert {reply.json()["status"] for reply in replies} == {"Done"}
    statuses = [entry[0] for entry in user.history(job_id)]
    assert statuses.count("Running") == 1 and statuses.count("Done") == 1
    assert [user.job(job["job_id"])["status"] for job in first] == ["Matched", "Done", "Matched"]
    again = match(pilot, "k3", n=3)  # the replay leaves out the job that moved on
    assert [job["job_id"] for job in again] == [first[0]["job_id"], first[2]["job_id"]]
