"""How much of the node the pilot may fill, and the jobs filling it now."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any, Optional

from pilot.reporting import RunningAnswer
from protocol import CheckReport, JobAssignment
from wrapper.job import JobOutcome, JobRun
from wrapper.logstream import LogShipper


@dataclasses.dataclass(frozen=True)
class NodeCapacity:
    cores: int
    memory_mb: int
    """0 when unknown: then memory does not limit matching."""


def _fact(reports: Sequence[CheckReport], name: str) -> Any:
    for report in reports:
        if name in report.facts:
            return report.facts[name]
    return None


def capacity_from_checks(
    reports: Sequence[CheckReport],
    configured_cores: Optional[int] = None,
    configured_memory_mb: Optional[int] = None,
) -> NodeCapacity:
    """The configured figures win; otherwise what the cores and memory checks measured."""
    cores = configured_cores if configured_cores is not None else _fact(reports, "cores")
    memory_mb = (
        configured_memory_mb if configured_memory_mb is not None else _fact(reports, "memory_mb")
    )
    return NodeCapacity(cores=max(1, int(cores or 1)), memory_mb=max(0, int(memory_mb or 0)))


@dataclasses.dataclass
class RunningJob:
    """One job the pilot holds, from match to its reaping by the loop."""

    assignment: JobAssignment
    run: JobRun
    match_s: float
    started_at: float
    next_heartbeat_at: float
    thread: Optional[threading.Thread] = None
    outcome: Optional[JobOutcome] = None
    running_answer: Optional[RunningAnswer] = None
    finished: bool = False
    logs: Optional[LogShipper] = None
    """Ships the payload's stdout/stderr live; flushed before the final status."""
    start_unreported: bool = False
    """The payload started and no heartbeat has said so yet (``Feature.RUNNING_IN_HEARTBEAT``)."""
    uid: Optional[int] = None
    """The job's own uid (a root pilot with ``payload_uids``), given back when it ends."""
    payload_pid: Optional[int] = None
    renewed_at: float = 0.0
    """When the coordinator last renewed the job's lease (its match, a heartbeat answered)."""
    fenced: bool = False
    """Stopped because its lease could not be renewed: reported as an infrastructure failure."""

    def __post_init__(self) -> None:
        self.renewed_at = self.renewed_at or self.started_at

    def lease_s(self, job_lease_s: float) -> float:
        """How long the coordinator keeps this job the pilot's with no word from it: the
        match's lease (``JobAssignment.lease_s``, the match timeout) while the job is still
        Matched there (its start not confirmed, nor ridden on a heartbeat yet), else
        ``job_lease_s`` (the registration's: heartbeat timeout + stalled grace). The shorter
        when both apply; 0 when the coordinator said neither."""
        matched = self.running_answer is None or (
            self.running_answer is RunningAnswer.IN_HEARTBEAT and self.start_unreported
        )
        leases = (job_lease_s, self.assignment.lease_s if matched else 0.0)
        given = [lease for lease in leases if lease > 0]
        return min(given) if given else 0.0


class Slots:
    """The jobs running now, shared by the loop and the job threads (one lock)."""

    def __init__(self, capacity: NodeCapacity) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._jobs: dict[int, RunningJob] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def add(self, job: RunningJob) -> None:
        with self._lock:
            self._jobs[job.assignment.job_id] = job

    def jobs(self) -> list[RunningJob]:
        with self._lock:
            return list(self._jobs.values())

    def take_finished(self) -> list[RunningJob]:
        """Remove and return the jobs whose threads are done."""
        with self._lock:
            done = [j for j in self._jobs.values() if j.finished]
            for job in done:
                del self._jobs[job.assignment.job_id]
        return done

    def free(self) -> NodeCapacity:
        jobs = self.jobs()
        return NodeCapacity(
            cores=self.capacity.cores - sum(j.assignment.cores for j in jobs),
            memory_mb=max(0, self.capacity.memory_mb - sum(j.assignment.memory_mb for j in jobs)),
        )

    def kill_all(self, reason: str) -> None:
        for job in self.jobs():
            job.run.kill(reason)
