"""How much of the node the pilot may fill, and the jobs filling it now.

The node's share is cores, memory, CPUs to pin jobs to and GPUs. Each job started gets an
``Allocation`` (``wrapper.devices``) out of what is free: the GPUs the coordinator named in
its assignment (it chose them from the free ones this pilot offered) and, when pinning, the
lowest free CPU ids, as many as its cores.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from pilot.reporting import RunningAnswer
from protocol import CheckReport, GpuInfo, JobAssignment
from wrapper.devices import Allocation, GpuDevice
from wrapper.job import JobOutcome, JobRun
from wrapper.logstream import LogShipper

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NodeGpu:
    """One GPU of this pilot: how it is offered, and the device files it needs."""

    info: GpuInfo
    devices: tuple[str, ...] = ()

    def device(self) -> GpuDevice:
        return GpuDevice(self.info.id, self.info.vendor, self.devices)


@dataclasses.dataclass(frozen=True)
class NodeCapacity:
    cores: int
    memory_mb: int
    """0 when unknown: then memory does not limit matching."""
    gpus: Optional[tuple[NodeGpu, ...]] = None
    """None when GPUs were not counted (no ``gpu`` check ran): GPU jobs then match on the
    ``GPU`` tag alone."""
    cpus: tuple[int, ...] = ()
    """CPU ids jobs are pinned to; empty: no pinning."""


def _fact(reports: Sequence[CheckReport], name: str) -> Any:
    for report in reports:
        if name in report.facts:
            return report.facts[name]
    return None


def gpus_from_facts(found: Any) -> Optional[tuple[NodeGpu, ...]]:
    """The ``gpus`` fact of the ``gpu`` check as this pilot's GPUs (None: not counted)."""
    if not isinstance(found, list):
        return None
    gpus = []
    for item in found:
        if not isinstance(item, Mapping) or "id" not in item:
            continue
        try:
            info = GpuInfo.from_dict({**item, "id": str(item["id"])})
        except (TypeError, ValueError):
            logger.warning("a GPU fact does not read: %.120r", item)
            continue
        gpus.append(NodeGpu(info, tuple(str(d) for d in item.get("devices") or ())))
    return tuple(gpus)


def capacity_from_checks(
    reports: Sequence[CheckReport],
    configured_cores: Optional[int] = None,
    configured_memory_mb: Optional[int] = None,
    cpus: Sequence[int] = (),
) -> NodeCapacity:
    """The configured figures win; otherwise what the cores and memory checks measured.
    ``cpus``: the CPU ids the pilot may pin jobs to (its first ``cores`` are used)."""
    cores = configured_cores if configured_cores is not None else _fact(reports, "cores")
    memory_mb = (
        configured_memory_mb if configured_memory_mb is not None else _fact(reports, "memory_mb")
    )
    count = max(1, int(cores or 1))
    pinned = tuple(sorted(cpus)[:count]) if len(cpus) >= count else ()
    return NodeCapacity(
        cores=count,
        memory_mb=max(0, int(memory_mb or 0)),
        gpus=gpus_from_facts(_fact(reports, "gpus")),
        cpus=pinned,
    )


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
    allocation: Allocation = dataclasses.field(default_factory=Allocation)
    """Its CPUs and GPUs."""
    payload_done: bool = False
    """The wrapper is done (payload ended, output staged out); the final report may still
    be on its way. Set by the job's thread."""
    released: bool = False
    """The loop has counted the job's outcome and freed its cores, CPUs and GPUs for the
    next match, while the job's thread still sends its final report."""

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

    def done_unreleased(self) -> list[RunningJob]:
        """Jobs whose payload is done and whose resources the loop has not freed yet."""
        with self._lock:
            return [j for j in self._jobs.values() if j.payload_done and not j.released]

    def free(self) -> NodeCapacity:
        """What is free for new jobs: released jobs hold nothing any more."""
        jobs = [job for job in self.jobs() if not job.released]
        capacity = self.capacity
        busy_gpus = {gpu.id for job in jobs for gpu in job.allocation.gpus}
        busy_cpus = {cpu for job in jobs for cpu in job.allocation.cpus}
        gpus = capacity.gpus
        if gpus is not None:
            gpus = tuple(gpu for gpu in gpus if gpu.info.id not in busy_gpus)
        return NodeCapacity(
            cores=capacity.cores - sum(j.assignment.cores for j in jobs),
            memory_mb=max(0, capacity.memory_mb - sum(j.assignment.memory_mb for j in jobs)),
            gpus=gpus,
            cpus=tuple(cpu for cpu in capacity.cpus if cpu not in busy_cpus),
        )

    def allocate(self, assignment: JobAssignment) -> Allocation:
        """The CPUs and GPUs of a job about to start, out of what is free."""
        free = self.free()
        offered = {gpu.info.id: gpu for gpu in free.gpus or ()}
        unknown = [gpu_id for gpu_id in assignment.gpus if gpu_id not in offered]
        if unknown:
            logger.warning("job %d: GPUs %s are not free here", assignment.job_id, unknown)
        gpus = tuple(offered[g].device() for g in assignment.gpus if g in offered)
        cpus = free.cpus[: assignment.cores] if len(free.cpus) >= assignment.cores else ()
        return Allocation(cpus=cpus, gpus=gpus)

    def kill_all(self, reason: str) -> None:
        for job in self.jobs():
            job.run.kill(reason)
