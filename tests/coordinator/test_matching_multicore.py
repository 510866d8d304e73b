"""Several jobs per match: cores and memory of the offer are never overbooked."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningCoordinator
from tests.coordinator.matching_calls import match, register_pilot, submit_jobs

_vo_numbers = itertools.count()


def test_single_core_jobs_fill_the_free_cores(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    submit_jobs(coord, vo, copies=20)
    got = match(coord, register_pilot(coord, vo), n=10, cores_free=8)
    assert [job["cores"] for job in got] == [1] * 8


def test_a_wide_job_takes_every_free_core_it_can_use(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    (wide,) = submit_jobs(coord, vo, {"MinNumberOfProcessors": 2, "MaxNumberOfProcessors": 16})
    submit_jobs(coord, vo, copies=3)
    got = match(coord, register_pilot(coord, vo), n=5, cores_free=8)
    assert [(job["job_id"], job["cores"]) for job in got] == [(wide, 8)]
    got = match(coord, register_pilot(coord, vo), n=5, cores_free=1)
    assert [job["cores"] for job in got] == [1]


def test_a_range_job_bigger_than_the_node_gets_its_maximum(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    submit_jobs(coord, vo, {"MinNumberOfProcessors": 2, "MaxNumberOfProcessors": 4})
    got = match(coord, register_pilot(coord, vo), n=1, cores_free=64)
    assert [job["cores"] for job in got] == [4]


def test_multi_core_jobs_fit_whole_or_not_at_all(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    submit_jobs(coord, vo, {"NumberOfProcessors": 3}, copies=5)
    got = match(coord, register_pilot(coord, vo), n=10, cores_free=8)
    assert [job["cores"] for job in got] == [3, 3]


def test_memory_is_shared_out_too(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    submit_jobs(coord, vo, {"MaxRAM": 2000}, copies=5)
    got = match(coord, register_pilot(coord, vo), n=10, cores_free=10, memory_free_mb=5000)
    assert [job["memory_mb"] for job in got] == [2000, 2000]


def test_n_caps_the_number_of_jobs(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    submit_jobs(coord, vo, copies=10)
    assert len(match(coord, register_pilot(coord, vo), n=3, cores_free=32)) == 3


JOB_SHAPES = st.lists(
    st.tuples(
        st.integers(1, 6),  # min cores
        st.integers(0, 6),  # extra max cores
        st.sampled_from([0, 500, 1500, 4000]),  # MaxRAM
        st.integers(1, 3),  # copies
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shapes=JOB_SHAPES,
    cores_free=st.integers(0, 12),
    memory_free_mb=st.sampled_from([0, 1000, 3000, 8000]),
    n=st.integers(1, 8),
)
def test_a_match_never_overbooks_the_offer(
    shared_coordinator: RunningCoordinator,
    shapes: list[tuple[int, int, int, int]],
    cores_free: int,
    memory_free_mb: int,
    n: int,
) -> None:
    coord = shared_coordinator
    vo = f"vo-overbook-{next(_vo_numbers)}"
    bounds: dict[int, tuple[int, int]] = {}
    for low, extra, ram, copies in shapes:
        description: dict[str, Any] = {"MinNumberOfProcessors": low}
        description.update(MaxNumberOfProcessors=low + extra, MaxRAM=ram)
        for job_id in submit_jobs(coord, vo, description, copies=copies):
            bounds[job_id] = (low, low + extra)
    offer = {"n": n, "cores_free": cores_free, "memory_free_mb": memory_free_mb}
    got = match(coord, register_pilot(coord, vo), **offer)
    assert len(got) <= n
    assert sum(job["cores"] for job in got) <= cores_free
    for job in got:
        low, high = bounds[job["job_id"]]
        assert low <= job["cores"] <= high
    if memory_free_mb:
        assert sum(job["memory_mb"] for job in got) <= memory_free_mb
    fitting = [
        (low, ram)
        for low, _extra, ram, _copies in shapes
        if low <= cores_free and (not memory_free_mb or ram <= memory_free_mb)
    ]
    assert bool(got) == bool(fitting)
