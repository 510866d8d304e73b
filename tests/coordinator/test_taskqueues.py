"""Task queues: jobs with the same requirements and owner share one; empty ones go away."""

from __future__ import annotations

from typing import Any

import requests
from hypothesis import given
from hypothesis import strategies as st

from coordinator.logic.taskqueues import queue_key
from coordinator.store.taskqueues import QUEUE_COLUMNS
from tests.conftest import RunningCoordinator
from tests.coordinator.matching_calls import (
    job_status,
    match,
    register_pilot,
    report,
    submit_jobs,
)

BASE_ROW: dict[str, Any] = {
    "vo": "vo1",
    "owner": "alice",
    "owner_group": "",
    "req_sites": "[]",
    "banned_sites": "[]",
    "platform": "",
    "tags": "[]",
    "cores": 1,
    "max_cores": 1,
    "max_ram_mb": 0,
    "cpu_time_s": None,
    "wall_time_s": None,
    "container": "",
    "gpus": 0,
    "gpu_memory_mb": 0,
    "gpu_capability": "",
    "gpu_models": "[]",
    "whole_node": False,
    "min_cpu_score": 0.0,
}
CHANGES: dict[str, Any] = {
    "vo": "vo2",
    "owner": "bob",
    "owner_group": "prod",
    "req_sites": '["SITE.A"]',
    "banned_sites": '["SITE.B"]',
    "platform": "x86_64-el9",
    "tags": '["GPU"]',
    "cores": 2,
    "max_cores": 8,
    "max_ram_mb": 4000,
    "cpu_time_s": 3600,
    "wall_time_s": 7200,
    "container": "el9.sif",
    "gpus": 2,
    "gpu_memory_mb": 40000,
    "gpu_capability": "8.0",
    "gpu_models": '["A100"]',
    "whole_node": True,
    "min_cpu_score": 10.0,
}


def test_the_key_covers_every_queue_column() -> None:
    assert set(CHANGES) == set(QUEUE_COLUMNS)


@given(changed=st.sets(st.sampled_from(sorted(CHANGES))), priority=st.integers(-5, 5))
def test_jobs_share_a_queue_exactly_when_their_requirements_and_owner_match(
    changed: set[str], priority: int
) -> None:
    other = {**BASE_ROW, **{name: CHANGES[name] for name in changed}}
    # Priority, name and the rest of the description are not requirements.
    other.update(priority=priority, job_name="x", description="{}")
    assert (queue_key(other) == queue_key(BASE_ROW)) == (not changed)


def queues(coord: RunningCoordinator, vo: str) -> int:
    page = requests.get(f"{coord.url}/metrics").text
    for line in page.splitlines():
        if line.startswith(f'gridpilot_task_queues{{vo="{vo}"}} '):
            return int(float(line.split()[-1]))
    return 0


def test_a_bulk_of_10000_alike_jobs_is_one_queue(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    submit_jobs(shared_coordinator, vo, {"Tags": ["cvmfs"]}, copies=10_000)
    assert queues(shared_coordinator, vo) == 1


def test_requirements_and_owners_make_queues_priority_does_not(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    submit_jobs(coord, vo, {"Priority": 1})
    submit_jobs(coord, vo, {"Priority": 7})
    assert queues(coord, vo) == 1
    submit_jobs(coord, vo, user="bob")
    submit_jobs(coord, vo, {"Site": "SITE.A"})
    submit_jobs(coord, vo, {"NumberOfProcessors": 4})
    submit_jobs(coord, vo, {"Tags": ["GPU"], "Priority": 3})
    submit_jobs(coord, vo, {"Tags": ["GPU"], "Priority": 4})
    assert queues(coord, vo) == 5


def test_an_empty_queue_is_removed_by_the_next_match(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    first, second = submit_jobs(coord, vo, copies=2)
    pilot = register_pilot(coord, vo)
    assert [job["job_id"] for job in match(coord, pilot, n=2, cores_free=2)] == [first, second]
    assert match(coord, pilot) == []
    assert queues(coord, vo) == 1, "jobs that may come back to Waiting keep their queue"
    for job_id in (first, second):
        for status in ("Running", "Done"):
            report(coord, pilot, job_id, status)
    assert match(coord, pilot) == []
    assert queues(coord, vo) == 0


def test_a_queue_of_killed_jobs_goes_away(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    (job_id,) = submit_jobs(coord, vo, {"Tags": ["rare"]})
    token = coord.token(vo=vo)
    assert requests.post(coord.api(f"/jobs/{job_id}/kill"), headers=coord.headers(token)).ok
    assert match(coord, register_pilot(coord, vo), tags=["rare"]) == []
    assert queues(coord, vo) == 0


def test_a_rescheduled_job_is_matched_again_from_a_new_queue(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    (job_id,) = submit_jobs(coord, vo)
    pilot = register_pilot(coord, vo)
    assert [job["job_id"] for job in match(coord, pilot)] == [job_id]
    for status in ("Running", "Done"):
        report(coord, pilot, job_id, status)
    assert match(coord, pilot) == [] and queues(coord, vo) == 0
    token = coord.token(vo=vo)
    reply = requests.post(coord.api(f"/jobs/{job_id}/reschedule"), headers=coord.headers(token))
    assert reply.status_code == 200, reply.text
    assert job_status(coord, vo, job_id) == "Waiting"
    assert queues(coord, vo) == 1
    assert [job["job_id"] for job in match(coord, register_pilot(coord, vo))] == [job_id]
