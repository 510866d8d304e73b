"""``POST /pilots/{pilot_id}/heartbeat``: one request renews all of a pilot's leases, and
each job that cannot be renewed gets its own refusal without costing the others theirs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from coordinator.logic.heartbeats import MAX_JOBS_PER_HEARTBEAT
from tests.conftest import RunningCoordinator, _stop_and_check, launch_coordinator
from tests.coordinator.pilot_calls import FakePilot, User, wait_for
from tests.coordinator.test_metrics import scrape


def batch(pilot: FakePilot, job_ids: list[int], **send: Any) -> requests.Response:
    body = {"jobs": [{"job_id": job_id, "heartbeat": {"cpu_s": 2.5}} for job_id in job_ids]}
    return requests.post(
        pilot.coord.api(f"/pilots/{pilot.pilot_id}/heartbeat"),
        json=body,
        headers=pilot.headers(),
        **send,
    )


def results(reply: requests.Response) -> dict[int, dict[str, Any]]:
    assert reply.status_code == 200, reply.text
    return {result["job_id"]: result for result in reply.json()["results"]}


def running_jobs(user: User, pilot: FakePilot, n: int) -> list[int]:
    job_ids = [user.submit()[0] for _ in range(n)]
    assert sorted(pilot.match(n)) == sorted(job_ids)
    for job_id in job_ids:
        assert pilot.report(job_id, "Running").status_code == 200
    return job_ids


def test_one_request_renews_every_job_and_counts_each(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    job_ids = running_jobs(user, pilot, 3)
    before = scrape(shared_coordinator)
    by_job = results(batch(pilot, job_ids))
    assert by_job == {
        job_id: {"job_id": job_id, "ok": True, "error": None, "commands": []} for job_id in job_ids
    }
    after = scrape(shared_coordinator)
    assert after["gridpilot_heartbeats_total"] - before["gridpilot_heartbeats_total"] >= 3
    assert (
        after["gridpilot_pilot_heartbeats_total"] - before["gridpilot_pilot_heartbeats_total"] >= 1
    )
    # That the leases were renewed: test_batched_jobs_keep_their_lease_...
    assert {user.job(job_id)["status"] for job_id in job_ids} == {"Running"}


def test_a_lost_lease_is_refused_for_that_job_only(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    kept, lost = running_jobs(user, pilot, 2)
    assert user.post(f"/jobs/{lost}/reschedule").status_code == 200
    by_job = results(batch(pilot, [kept, lost]))
    assert by_job[kept]["ok"] is True
    assert by_job[lost]["ok"] is False
    assert by_job[lost]["error"]["code"] == "lease_lost"
    assert str(lost) in by_job[lost]["error"]["message"]
    # The same answer the per-job endpoint gives.
    single = pilot.heartbeat(lost)
    assert (single.status_code, single.json()["code"]) == (409, "lease_lost")


def test_a_kill_reaches_the_right_job(shared_coordinator: RunningCoordinator, vo: str) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    spared, doomed = running_jobs(user, pilot, 2)
    assert user.post(f"/jobs/{doomed}/kill").status_code == 200
    by_job = results(batch(pilot, [spared, doomed]))
    assert by_job[spared]["commands"] == []
    assert [command["kind"] for command in by_job[doomed]["commands"]] == ["kill"]


def test_other_pilots_jobs_are_refused_per_job(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, mine = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (own,) = running_jobs(user, mine, 1)
    other = FakePilot(shared_coordinator, vo, subject="other-factory")
    (theirs,) = running_jobs(user, other, 1)
    other_vo = f"{vo}-b"
    (elsewhere,) = running_jobs(
        User(shared_coordinator, other_vo), FakePilot(shared_coordinator, other_vo), 1
    )
    by_job = results(batch(mine, [own, theirs, elsewhere, 10**9]))
    assert by_job[own]["ok"] is True
    assert by_job[theirs]["error"]["code"] == "lease_lost"
    # A job of another VO, or none at all: the pilot does not learn which.
    assert by_job[elsewhere]["error"]["code"] == "not_found"
    assert by_job[10**9]["error"]["code"] == "not_found"


def test_whole_request_errors_stay_http_errors(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (job_id,) = running_jobs(user, pilot, 1)
    too_many = batch(pilot, list(range(1, MAX_JOBS_PER_HEARTBEAT + 2)))
    assert too_many.status_code == 413
    assert too_many.json()["code"] == "too_large"
    assert too_many.json()["details"]["limit"] == MAX_JOBS_PER_HEARTBEAT
    twice = batch(pilot, [job_id, job_id])
    assert (twice.status_code, twice.json()["code"]) == (400, "bad_request")
    # Another factory's token naming this pilot: the pilot is not theirs.
    stranger = FakePilot(shared_coordinator, vo, subject="stranger")
    stolen = requests.post(
        shared_coordinator.api(f"/pilots/{pilot.pilot_id}/heartbeat"),
        json={"jobs": [{"job_id": job_id}]},
        headers=stranger.headers(),
    )
    assert (stolen.status_code, stolen.json()["code"]) == (404, "not_found")


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCoordinator]:
    running = launch_coordinator(
        tmp_path_factory.mktemp("fast-batch"),
        heartbeat_timeout_s=1,
        stalled_grace_s=60,
        sweep_interval_s=0.2,
    )
    yield running
    _stop_and_check(running)


def test_batched_jobs_keep_their_lease_and_a_stalled_one_comes_back(
    fast: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(fast, vo), FakePilot(fast, vo)
    beating, silent = running_jobs(user, pilot, 2)

    def silent_stalled() -> bool:
        assert results(batch(pilot, [beating]))[beating]["ok"]
        return bool(user.job(silent)["status"] == "Stalled")

    wait_for(silent_stalled, timeout_s=10, what="the silent job to stall")
    assert user.job(beating)["status"] == "Running"
    by_job = results(batch(pilot, [beating, silent]))
    assert by_job[silent]["ok"] is True
    assert user.job(silent)["status"] == "Running"
    assert user.history(silent)[-1][:2] == ("Running", "Job heard from again after stalling")
