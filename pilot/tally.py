"""How the pilot's jobs ended, counted, and the black-hole guard fed from those counts."""

from __future__ import annotations

import dataclasses
from typing import Optional

from pilot.guard import BlackHoleGuard
from pilot.reporting import RunningAnswer
from pilot.slots import RunningJob
from protocol import JobStatus
from wrapper.outcome import MinorStatus

STARTED = (None, RunningAnswer.CONFIRMED, RunningAnswer.IN_HEARTBEAT)
"""Running answers of a job whose payload was let start."""


@dataclasses.dataclass
class JobTally:
    guard: BlackHoleGuard
    done: int = 0
    failed: int = 0
    killed: int = 0
    not_started: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.killed

    def record(self, job: RunningJob, ran_s: float) -> Optional[str]:
        """Count one reaped job; the black-hole reason when the guard trips on it."""
        if job.running_answer not in STARTED:
            self.not_started += 1
            return None  # not the node's fault, not the payload's: the guard ignores it
        status = job.outcome.status if job.outcome is not None else JobStatus.FAILED
        if status is JobStatus.KILLED:
            self.killed += 1
            return None
        failed = status is JobStatus.FAILED
        if failed:
            self.failed += 1
        else:
            self.done += 1
        owner = str(job.assignment.description.get("Owner", ""))
        infrastructure = points_at_the_node(job)
        if not self.guard.record(failed, ran_s, owner=owner, infrastructure=infrastructure):
            return None
        guard = self.guard
        return (
            f"black-hole guard: {guard.fast_failures_in_a_row} jobs in a row failed within "
            f"{guard.fast_s:.0f} s of starting ({guard.infrastructure_failures} infrastructure "
            f"failures, {guard.owners} owner(s))"
        )

    def summary(self) -> str:
        return (
            f"jobs done={self.done} failed={self.failed} killed={self.killed} "
            f"not started={self.not_started}, "
            f"fast failures in a row={self.guard.fast_failures_in_a_row}"
        )


IMAGE_FAILURES = (
    MinorStatus.CONTAINER_IMAGE_NOT_FOUND,
    MinorStatus.RUNTIME_UNAVAILABLE,
    MinorStatus.CONTAINER_RUNTIME_FAILED,
)
"""Infrastructure failures an image can cause: no runtime here for it, missing, refused."""


def points_at_the_node(job: RunningJob) -> bool:
    """Whether a job's failure is the node's whoever owns the job: an infrastructure failure
    (rescheduled), unless the job's own choice explains it. An image the job named that is
    missing, or that no runtime here runs, is rescheduled (another node may have it or run
    it) but says nothing sure about this node: it counts as its owner's failure, so one user
    naming a bad image cannot stop every pilot, while a node whose CVMFS or runtime is
    broken fails several owners' jobs and still trips the guard.
    """
    outcome = job.outcome
    if outcome is None:
        return True  # the wrapper itself crashed
    if not outcome.infrastructure_error:
        return False
    about_image = outcome.minor_status.startswith(tuple(m.value for m in IMAGE_FAILURES))
    return not (about_image and bool(job.assignment.container))
