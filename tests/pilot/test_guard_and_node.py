from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from pilot.guard import BlackHoleGuard
from pilot.slots import RunningJob, capacity_from_checks
from pilot.tally import points_at_the_node
from protocol import CheckReport, CheckStatus, JobAssignment, JobStatus
from wrapper.job import JobRun, WrapperConfig
from wrapper.outcome import JobOutcome


def test_black_hole_guard_trips_after_k_fast_failures_of_several_owners() -> None:
    guard = BlackHoleGuard(max_fast_failures=3, fast_s=60)
    assert not guard.record(True, 1.0, owner="alice")
    assert not guard.record(True, 2.0, owner="bob")
    assert not guard.record(False, 1.0, owner="alice")  # a success resets the count
    assert not guard.record(True, 1.0, owner="alice")
    assert not guard.record(True, 120.0, owner="bob")  # a slow failure is not the node's fault
    assert not guard.record(True, 1.0, owner="alice")
    assert not guard.record(True, 1.0, owner="bob")
    assert guard.record(True, 1.0, owner="alice")
    assert (guard.fast_failures_in_a_row, guard.owners) == (3, 2)


def test_one_owners_broken_jobs_never_trip_it() -> None:
    guard = BlackHoleGuard(max_fast_failures=3, fast_s=60)
    assert not any(guard.record(True, 1.0, owner="alice") for _ in range(50))
    assert guard.fast_failures_in_a_row == 50 and guard.owners == 1


def test_infrastructure_failures_count_whoever_owns_the_jobs() -> None:
    guard = BlackHoleGuard(max_fast_failures=3, fast_s=60)
    assert not guard.record(True, 1.0, owner="alice", infrastructure=True)
    assert not guard.record(True, 1.0, owner="alice", infrastructure=True)
    assert guard.record(True, 1.0, owner="alice", infrastructure=True)
    mixed = BlackHoleGuard(max_fast_failures=3, fast_s=60)
    assert not mixed.record(True, 1.0, owner="alice")
    assert not mixed.record(True, 1.0, owner="alice")
    assert mixed.record(True, 1.0, owner="alice", infrastructure=True)  # one more "owner"


def test_min_owners_of_one_counts_every_fast_failure() -> None:
    guard = BlackHoleGuard(max_fast_failures=2, fast_s=60, min_owners=1)
    assert not guard.record(True, 1.0, owner="alice")
    assert guard.record(True, 1.0, owner="alice")


def test_black_hole_guard_can_be_disabled() -> None:
    guard = BlackHoleGuard(max_fast_failures=0)
    assert not any(guard.record(True, 0.1) for _ in range(100))


def test_capacity_comes_from_checks_unless_configured() -> None:
    reports = [
        CheckReport(name="cores", status=CheckStatus.OK, facts={"cores": 8}),
        CheckReport(name="memory", status=CheckStatus.OK, facts={"memory_mb": 16000}),
    ]
    measured = capacity_from_checks(reports)
    assert (measured.cores, measured.memory_mb) == (8, 16000)
    configured = capacity_from_checks(reports, configured_cores=2, configured_memory_mb=4000)
    assert (configured.cores, configured.memory_mb) == (2, 4000)
    assert capacity_from_checks([]).cores == 1


def _failed_job(tmp_path: Path, container: str, minor: Optional[str], infra: bool) -> RunningJob:
    assignment = JobAssignment(job_id=1, executable="/bin/true", container=container)
    job = RunningJob(
        assignment=assignment,
        run=JobRun(assignment, tmp_path / "job_1", None, WrapperConfig()),  # type: ignore[arg-type]
        match_s=0.0,
        started_at=0.0,
        next_heartbeat_at=0.0,
    )
    if minor is not None:
        job.outcome = JobOutcome(
            JobStatus.FAILED, minor, "", None, "", {}, 0.0, 0, infrastructure_error=infra
        )
    return job


@pytest.mark.parametrize(
    ("container", "minor", "infra", "node"),
    [
        # The job's own image: missing, no runtime here for it, or its runtime failing on it.
        ("/cvmfs/x/gone", "Container Image Not Found: /cvmfs/x/gone: does not exist", 1, 0),
        ("/cvmfs/x/img.sif", "Runtime Unavailable: no runtime for a container", 1, 0),
        ("/cvmfs/x/img", "Container Runtime Failed: bwrap: Can't mkdir /x", 1, 0),
        # The site's default image missing, or any other infrastructure failure: the node's.
        ("", "Container Image Not Found: /site/default: does not exist", 1, 1),
        ("/cvmfs/x/img", "Input Sandbox Download Failed", 1, 1),
        ("", None, 1, 1),  # the wrapper crashed: no outcome at all
        # A payload's own failure is never the node's.
        ("", "Application Finished With Errors", 0, 0),
    ],
)
def test_only_failures_the_jobs_own_choices_cannot_explain_point_at_the_node(
    tmp_path: Path, container: str, minor: Optional[str], infra: int, node: int
) -> None:
    job = _failed_job(tmp_path, container, minor, bool(infra))
    assert points_at_the_node(job) is bool(node)
