"""The watchdog: a job's limits, checked over the payload's whole process tree.

Limits come from the job (``WallTime``, ``CPUTime``, ``MaxRAM`` in the ``JobAssignment``), or
from the site's defaults when the job gives none, scaled by the site's grace factors; the
site alone sets the work-dir, output, process-count and stall limits. 0 means "no limit".

``JobLimits.for_job`` and ``check`` are pure: a sample in, the first limit it breaks out.
``Watchdog`` is the loop part: every ``watchdog_interval_s`` it samples the tree (CPU, memory,
process count through ``RunningPayload``), the sizes of StdOutput/StdError, and less often
the work dir. Besides the tree walk, the payload's processes are found by the environment
the wrapper gave them (``GRIDPILOT_JOB_ID`` and ``GRIDPILOT_WORKDIR``), so a process that
double-forked, left the session and was re-parented to init is still sampled and killed;
and, where cgroup v2 is delegated (``wrapper.cgroups``), by the job's cgroup, which also
carries hard ``memory.max`` and ``pids.max`` limits.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, Optional

import psutil

from protocol import JobAssignment
from wrapper import cgroups
from wrapper.config import GIB, MIB, WatchdogPolicy
from wrapper.runtime import RunningPayload, RunSpec
from wrapper.usage import files_bytes, marked_processes, pss_bytes, tree_bytes

logger = logging.getLogger(__name__)

MARKER_VARIABLES = ("GRIDPILOT_JOB_ID", "GRIDPILOT_WORKDIR")
"""Set by the wrapper for every payload; a process carrying both values is the job's."""


class Limit(str, enum.Enum):
    """The limits, in the order they are checked; values start the minor status."""

    MEMORY = "Memory limit exceeded"
    PROCESSES = "Process limit exceeded"
    OUTPUT = "Output size limit exceeded"
    WORKDIR = "Work dir size limit exceeded"
    CPU = "CPU time limit exceeded"
    WALL = "Wall time limit exceeded"
    STALLED = "Job stalled: no CPU progress for"


@dataclasses.dataclass(frozen=True)
class JobLimits:
    """The limits one job runs under; 0 means no limit."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    memory_bytes: int = 0
    processes: int = 0
    workdir_bytes: int = 0
    stdio_bytes: int = 0
    stalled_after_s: float = 0.0

    @classmethod
    def for_job(
        cls,
        policy: WatchdogPolicy,
        *,
        wall_time_s: Optional[int],
        cpu_time_s: Optional[int],
        memory_mb: int,
    ) -> JobLimits:
        """The job's values (site defaults where it has none) times the grace factors."""
        wall_s = wall_time_s or policy.default_wall_time_s
        cpu_s = cpu_time_s or policy.default_cpu_time_s
        ram_mb = memory_mb or policy.default_max_ram_mb
        margin_s = policy.time_limit_margin_s
        return cls(
            wall_s=wall_s * policy.wall_time_factor + margin_s if wall_s > 0 else 0.0,
            cpu_s=cpu_s * policy.cpu_time_factor + margin_s if cpu_s > 0 else 0.0,
            memory_bytes=int(ram_mb * MIB * policy.memory_factor) if ram_mb > 0 else 0,
            processes=policy.max_processes,
            workdir_bytes=policy.max_workdir_bytes,
            stdio_bytes=policy.max_stdio_bytes,
            stalled_after_s=policy.stalled_after_s,
        )


@dataclasses.dataclass(frozen=True)
class Sample:
    """What the watchdog saw at one moment."""

    wall_s: float
    cpu_s: float
    memory_bytes: int
    processes: int
    stdio_bytes: int
    workdir_bytes: int
    """As of the last work-dir walk."""
    idle_s: float
    """Seconds since the tree's CPU time last grew."""


def _size(value: float, unit_of: float) -> str:
    """Bytes in the unit that suits ``unit_of`` (1024-based, as MaxRAM's MB are)."""
    for unit, name in ((GIB, "GB"), (MIB, "MB"), (1024, "KB")):
        if unit_of >= unit:
            return f"{value / unit:.1f} {name}"
    return f"{value:.0f} bytes"


def _seconds(value: float, unit_of: float) -> str:
    return f"{value:.1f} s" if unit_of < 10 else f"{value:.0f} s"


def _count(value: float, unit_of: float) -> str:
    return f"{value:.0f}"


_FORMATS: dict[Limit, Callable[[float, float], str]] = {
    Limit.MEMORY: _size,
    Limit.PROCESSES: _count,
    Limit.OUTPUT: _size,
    Limit.WORKDIR: _size,
    Limit.CPU: _seconds,
    Limit.WALL: _seconds,
    Limit.STALLED: _seconds,
}


@dataclasses.dataclass(frozen=True)
class LimitHit:
    """A limit the job went over, with the value seen and the value allowed."""

    limit: Limit
    seen: float
    allowed: float
    by_kernel: bool = False
    """The cgroup's hard limit stopped it (the kernel's OOM killer), not a sample."""

    @property
    def minor_status(self) -> str:
        show = _FORMATS[self.limit]
        if self.by_kernel:
            return f"{self.limit.value}: killed by the kernel at {show(self.allowed, self.allowed)}"
        seen, allowed = show(self.seen, self.allowed), show(self.allowed, self.allowed)
        if self.limit == Limit.STALLED:
            return f"{self.limit.value} {seen} (limit {allowed})"
        return f"{self.limit.value}: {seen} > {allowed}"


def check(limits: JobLimits, sample: Sample) -> Optional[LimitHit]:
    """The first limit ``sample`` is over, or None."""
    pairs = (
        (Limit.MEMORY, sample.memory_bytes, limits.memory_bytes),
        (Limit.PROCESSES, sample.processes, limits.processes),
        (Limit.OUTPUT, sample.stdio_bytes, limits.stdio_bytes),
        (Limit.WORKDIR, sample.workdir_bytes, limits.workdir_bytes),
        (Limit.CPU, sample.cpu_s, limits.cpu_s),
        (Limit.WALL, sample.wall_s, limits.wall_s),
        (Limit.STALLED, sample.idle_s, limits.stalled_after_s),
    )
    for limit, seen, allowed in pairs:
        if allowed > 0 and seen > allowed:
            return LimitHit(limit, float(seen), float(allowed))
    return None


class StallClock:
    """Seconds since a CPU-time counter last grew."""

    def __init__(self, now_s: float) -> None:
        self._cpu_s = 0.0
        self._since_s = now_s

    def idle_s(self, cpu_s: float, now_s: float) -> float:
        if cpu_s > self._cpu_s:
            self._cpu_s, self._since_s = cpu_s, now_s
        return now_s - self._since_s


class Watchdog:
    """Samples one running payload and says when it went over a limit.

    ``poll`` belongs to the thread supervising the payload; killing is the caller's job.
    """

    def __init__(
        self,
        payload: RunningPayload,
        limits: JobLimits,
        policy: WatchdogPolicy,
        *,
        job_id: int,
        workdir: Path,
        stdio_paths: Sequence[Path],
        marker: Mapping[str, str],
        marker_uid: Optional[int] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._payload = payload
        self._limits = limits
        self._policy = policy
        self._workdir = workdir
        self._stdio_paths = list(stdio_paths)
        self._clock = clock
        self._started_s = clock()
        self._next_sample_s = self._started_s
        self._next_walk_s = self._started_s
        self._stall = StallClock(self._started_s)
        self._workdir_bytes = 0
        self.last: Optional[Sample] = None
        if marker:
            finder = functools.partial(
                marked_processes, dict(marker), marker_uid, payload.pids_since
            )
            payload.also_track(finder)
        self._cgroup: Optional[cgroups.JobCgroup] = None
        if policy.use_cgroups:
            self._cgroup = cgroups.for_payload(
                cgroups.host_support(),
                job_id,
                payload.pid,
                memory_bytes=limits.memory_bytes,
                max_processes=limits.processes,
            )
        if self._cgroup is not None:
            payload.also_track(self._cgroup_processes)
        logger.info("job %d: watchdog limits %s", job_id, limits)

    @classmethod
    def for_job(
        cls, payload: RunningPayload, job: JobAssignment, spec: RunSpec, policy: WatchdogPolicy
    ) -> Watchdog:
        """The watchdog of one job: its limits, its output files, its environment marker."""
        limits = JobLimits.for_job(
            policy, wall_time_s=job.wall_time_s, cpu_time_s=job.cpu_time_s, memory_mb=job.memory_mb
        )
        # Variables the wrapper set for the payload find processes that left the tree. Only
        # when they name the host work dir: in a container they hold the fixed inside path,
        # which another job could share, and the container's own PID namespace keeps
        # orphans inside the tree anyway.
        marker = {name: spec.env.get(name, "") for name in MARKER_VARIABLES}
        if marker["GRIDPILOT_WORKDIR"] != str(spec.cwd):
            marker = {}
        return cls(
            payload,
            limits,
            policy,
            job_id=job.job_id,
            workdir=spec.cwd,
            stdio_paths=[spec.stdout_path, spec.stderr_path],
            marker=marker,
            marker_uid=spec.user,
        )

    def poll(self) -> Optional[LimitHit]:
        """Sample when due; the limit the payload is over, or None."""
        now_s = self._clock()
        if now_s < self._next_sample_s:
            return None
        self._next_sample_s = now_s + self._policy.watchdog_interval_s
        self.last = self.sample(now_s)
        hit = self._kernel_hit() or check(self._limits, self.last)
        if hit is not None:
            logger.warning("payload %d: %s", self._payload.pid, hit.minor_status)
        return hit

    def sample(self, now_s: float) -> Sample:
        if now_s >= self._next_walk_s:
            self._next_walk_s = now_s + self._policy.full_scan_interval_s
            self._workdir_bytes = tree_bytes(self._workdir, self._limits.workdir_bytes)
            self._payload.processes()  # finds escaped processes; samples then count them
        usage = self._payload.sample()
        memory_bytes = usage.rss_bytes
        if 0 < self._limits.memory_bytes < memory_bytes:
            # Summed RSS counts pages shared between processes once per process: before
            # killing, measure again with shared pages split between their users.
            memory_bytes = pss_bytes(self._payload.processes()) or memory_bytes
        return Sample(
            wall_s=now_s - self._started_s,
            cpu_s=usage.cpu_s,
            memory_bytes=memory_bytes,
            processes=usage.processes,
            stdio_bytes=files_bytes(self._stdio_paths),
            workdir_bytes=self._workdir_bytes,
            idle_s=self._stall.idle_s(usage.cpu_s, now_s),
        )

    def after_exit(self) -> Optional[LimitHit]:
        """A limit the kernel enforced on a payload that has ended (cgroup OOM kill)."""
        return self._kernel_hit()

    def close(self) -> None:
        """Kill whatever is left in the job's cgroup and remove it."""
        if self._cgroup is None:
            return
        if self._cgroup.pids():
            self._cgroup.kill()
        self._cgroup.remove()

    def _kernel_hit(self) -> Optional[LimitHit]:
        if self._cgroup is None or self._cgroup.oom_kills() == 0:
            return None
        limit_bytes = float(self._limits.memory_bytes)
        return LimitHit(Limit.MEMORY, limit_bytes, limit_bytes, by_kernel=True)

    def _cgroup_processes(self) -> list[psutil.Process]:
        procs = []
        for pid in self._cgroup.pids() if self._cgroup is not None else []:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                continue
        return procs
