"""Match order across the task queues of one owner: highest Priority first, then the
oldest job, whether the jobs come one per call or many in one reply."""

from __future__ import annotations

import pytest

from tests.conftest import RunningCoordinator
from tests.coordinator.matching_calls import match, register_pilot, submit_jobs

OFFER = {"cores_free": 16, "tags": ["GPU", "cvmfs"]}


def _three_queues(coord: RunningCoordinator, vo: str) -> list[int]:
    """Jobs of three queues, in the order a pilot fitting all three must get them."""
    oldest = submit_jobs(coord, vo, {"Tags": ["cvmfs"], "Priority": 1}, copies=2)
    plain = submit_jobs(coord, vo, {"Priority": 1}, copies=20)  # more than one read's worth
    urgent = submit_jobs(coord, vo, {"Tags": ["GPU"], "Priority": 5}, copies=2)
    return urgent + oldest + plain


@pytest.mark.parametrize("per_call", [1, 7, 64])
def test_jobs_of_several_queues_come_in_priority_then_age_order(
    shared_coordinator: RunningCoordinator, vo: str, per_call: int
) -> None:
    coord = shared_coordinator
    expected = _three_queues(coord, vo)
    pilot = register_pilot(coord, vo, tags=OFFER["tags"])
    got: list[int] = []
    while True:
        jobs = match(coord, pilot, n=per_call, **OFFER)
        if not jobs:
            break
        assert len(jobs) <= per_call
        got += [job["job_id"] for job in jobs]
    assert got == expected
