"""DIRAC's job state machine: which status may follow which.

The table follows DIRAC's ``JobsStateMachine`` (WorkloadManagementSystem/Client/JobStatus.py,
v8 era) restricted to the states gridpilot has: there is no Staging or Scouting step here, so
the transitions into and out of those are left out. As in DIRAC, every state except Deleted
may "move" to itself, which is how a minor or application status change is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping

from coordinator.errors import InvalidTransition
from protocol import JobStatus

S = JobStatus

TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.SUBMITTING: frozenset({S.RECEIVED, S.CHECKING, S.DELETED, S.KILLED}),
    S.RECEIVED: frozenset({S.CHECKING, S.WAITING, S.FAILED, S.DELETED, S.KILLED}),
    S.CHECKING: frozenset({S.WAITING, S.RESCHEDULED, S.FAILED, S.DELETED, S.KILLED}),
    S.WAITING: frozenset({S.MATCHED, S.RESCHEDULED, S.DELETED, S.KILLED}),
    S.MATCHED: frozenset({S.RUNNING, S.FAILED, S.RESCHEDULED, S.KILLED}),
    S.RESCHEDULED: frozenset({S.WAITING, S.RECEIVED, S.DELETED, S.FAILED, S.KILLED}),
    S.RUNNING: frozenset(
        {S.STALLED, S.DONE, S.FAILED, S.RESCHEDULED, S.COMPLETING, S.KILLED, S.RECEIVED}
    ),
    S.STALLED: frozenset({S.RUNNING, S.FAILED, S.KILLED}),
    S.COMPLETING: frozenset({S.DONE, S.FAILED, S.COMPLETED, S.STALLED, S.KILLED}),
    S.COMPLETED: frozenset({S.DONE, S.FAILED}),
    S.DONE: frozenset({S.DELETED}),
    S.FAILED: frozenset({S.RESCHEDULED, S.DELETED}),
    S.KILLED: frozenset({S.DELETED}),
    S.DELETED: frozenset(),
}
"""Allowed next statuses for each status (self-transitions are handled separately)."""

SUBMISSION_PATH: tuple[JobStatus, ...] = (S.RECEIVED, S.CHECKING, S.WAITING)
"""The statuses a newly submitted job passes through, in order."""

KILL_AT_ONCE: frozenset[JobStatus] = frozenset(
    {S.SUBMITTING, S.RECEIVED, S.CHECKING, S.WAITING, S.RESCHEDULED, S.STALLED}
)
"""No live pilot holds a job in these states, so a kill takes effect immediately."""

KILL_BY_PILOT: frozenset[JobStatus] = frozenset({S.MATCHED, S.RUNNING, S.COMPLETING})
"""A pilot holds the job: the kill is passed on in its next heartbeat reply."""


def is_allowed(current: JobStatus, new: JobStatus) -> bool:
    if current is new:
        return current is not S.DELETED
    return new in TRANSITIONS[current]


def can_be_killed(status: JobStatus) -> bool:
    """True while a kill still changes something: the job can move to Killed."""
    return status is not S.KILLED and S.KILLED in TRANSITIONS[status]


def check_transition(current: JobStatus, new: JobStatus) -> None:
    """Raise ``InvalidTransition`` (409) unless ``current -> new`` is allowed."""
    if not is_allowed(current, new):
        message = f"a job cannot go from {current.value} to {new.value}"
        if current is new:
            message = f"the job is already {current.value}"
        raise InvalidTransition(
            message,
            details={"from": current.value, "to": new.value},
        )
