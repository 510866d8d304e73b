"""The job state machine follows DIRAC's JobsStateMachine (without Staging/Scouting)."""

from __future__ import annotations

import itertools

import pytest

from coordinator.errors import InvalidTransition
from coordinator.logic.states import KILL_AT_ONCE, KILL_BY_PILOT, check_transition, is_allowed
from protocol import FINAL_STATUSES, JobStatus

# DIRAC's table, written out by hand from WorkloadManagementSystem/Client/JobStatus.py:
# each line is "from: the states it may go to".
DIRAC_TABLE = """
Submitting: Received Checking Deleted Killed
Received: Checking Waiting Failed Deleted Killed
Checking: Waiting Rescheduled Failed Deleted Killed
Waiting: Matched Rescheduled Deleted Killed
Matched: Running Failed Rescheduled Killed
Rescheduled: Waiting Received Deleted Failed Killed
Running: Stalled Done Failed Rescheduled Completing Killed Received
Stalled: Running Failed Killed
Completing: Done Failed Completed Stalled Killed
Completed: Done Failed
Done: Deleted
Failed: Rescheduled Deleted
Killed: Deleted
Deleted:
"""


def _expected() -> set[tuple[JobStatus, JobStatus]]:
    allowed = set()
    for line in DIRAC_TABLE.strip().splitlines():
        source, _, targets = line.partition(":")
        for target in targets.split():
            allowed.add((JobStatus(source), JobStatus(target)))
    return allowed


EXPECTED = _expected()
PAIRS = list(itertools.product(JobStatus, JobStatus))


def test_table_covers_every_status() -> None:
    assert {source for source, _ in EXPECTED} | {JobStatus.DELETED} == set(JobStatus)


@pytest.mark.parametrize(("current", "new"), sorted(EXPECTED, key=str))
def test_allowed_transitions_pass(current: JobStatus, new: JobStatus) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(c, n) for c, n in PAIRS if (c, n) not in EXPECTED and c is not n],
    ids=str,
)
def test_every_other_transition_is_refused_with_details(current: JobStatus, new: JobStatus) -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_transition(current, new)
    assert caught.value.http_status == 409
    assert caught.value.details == {"from": current.value, "to": new.value}
    assert current.value in caught.value.message and new.value in caught.value.message


@pytest.mark.parametrize("status", [s for s in JobStatus if s is not JobStatus.DELETED])
def test_staying_in_a_state_is_allowed_for_minor_status_updates(status: JobStatus) -> None:
    assert is_allowed(status, status)


def test_deleted_is_the_end() -> None:
    assert not any(is_allowed(JobStatus.DELETED, s) for s in JobStatus)


def test_final_states_cannot_run_again() -> None:
    for final in FINAL_STATUSES:
        assert not is_allowed(final, JobStatus.RUNNING)
        assert is_allowed(final, JobStatus.DELETED)


def test_kill_sets_partition_the_killable_states() -> None:
    assert not KILL_AT_ONCE & KILL_BY_PILOT
    for status in KILL_AT_ONCE | KILL_BY_PILOT:
        assert is_allowed(status, JobStatus.KILLED)
