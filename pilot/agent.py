"""The pilot's loop: checks -> register -> match -> run (N slots) -> report -> repeat/exit.

One readable loop in ``Agent.run``. Each job runs in its own thread through the wrapper;
the loop thread alone talks to the coordinator about matching and heartbeats, and wakes up
whenever a job finishes. Stopping is warm then cold: the first ``request_stop`` takes no new
work and lets running jobs finish; the second kills them.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Mapping
from typing import Callable, Optional

from checks.registry import builtin_checks
from checks.runner import run_checks
from pilot import __version__
from pilot.client import CoordinatorClient
from pilot.config import PilotConfig
from pilot.errors import BlackHoleStop, CoordinatorRejected, FatalCheckFailed
from pilot.guard import BlackHoleGuard
from pilot.node import detect_batch_slot, hostname
from pilot.protocol import (
    CheckReport,
    CheckStatus,
    CommandKind,
    Heartbeat,
    JobAssignment,
    JobStatus,
    JobStatusUpdate,
    MatchRequest,
    PilotRegistration,
)
from pilot.slots import NodeCapacity, capacity_from_checks
from wrapper.job import JobOutcome, JobRun, WrapperConfig
from wrapper.sandbox import SandboxLimits

logger = logging.getLogger(__name__)

TICK_S = 1.0
"""Longest the loop sleeps: bounds how late a heartbeat or a stop request is handled."""


class PilotExit(enum.Enum):
    IDLE = "idle"
    """No work for ``idle_timeout_s``: the normal end."""
    NO_TIME_LEFT = "no_time_left"
    STOPPED = "stopped"
    """Asked to stop (signal) and drained or killed its jobs."""


@dataclasses.dataclass
class RunningJob:
    assignment: JobAssignment
    run: JobRun
    match_s: float
    started_at: float
    next_heartbeat_at: float
    thread: Optional[threading.Thread] = None
    outcome: Optional[JobOutcome] = None
    finished: bool = False


class Agent:
    def __init__(
        self,
        config: PilotConfig,
        client: CoordinatorClient,
        *,
        env: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.client = client
        self._env = env
        self._clock = clock
        self._wall_clock = wall_clock
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, RunningJob] = {}
        self._stop_requests = 0
        self._stop_reason = ""
        self.pilot_id = ""
        self.jobs_done = 0
        self._heartbeat_interval_s = 30.0
        self._capacity = NodeCapacity(cores=1, memory_mb=0)
        self._slot_end_epoch_s: Optional[float] = None
        self._guard = BlackHoleGuard(config.black_hole_failures, config.black_hole_window_s)
        self._wrapper_config = WrapperConfig(
            allow_plain=config.allow_plain,
            kill_grace_s=config.kill_grace_s,
            max_output_sandbox_bytes=config.max_output_sandbox_bytes,
            sandbox_limits=SandboxLimits(),
        )

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> PilotExit:
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        reports = self.run_checks()
        self._register(reports)
        idle_since = self._clock()
        next_match_at = self._clock()
        while True:
            self._reap_finished()
            self._send_heartbeats()
            if self._guard.tripped:
                if not self._running:
                    raise BlackHoleStop(
                        f"{self._guard.fast_failures_in_a_row} jobs in a row failed within "
                        f"{self._guard.fast_s:.0f} s of starting"
                    )
            elif self._stop_requests:
                if not self._running:
                    return PilotExit.STOPPED
            elif self._time_left_s() == 0 and not self._running:
                return PilotExit.NO_TIME_LEFT
            elif self._clock() >= next_match_at and self._free_capacity().cores > 0:
                started, retry_after_s = self._match_and_start()
                if started:
                    idle_since = self._clock()
                else:
                    next_match_at = self._clock() + min(retry_after_s, self.config.poll_interval_s)
            if self._running:
                idle_since = self._clock()
            elif self._clock() - idle_since >= self.config.idle_timeout_s:
                logger.info("no work for %.0f s: exiting", self.config.idle_timeout_s)
                return PilotExit.IDLE
            self._wake.wait(self._sleep_s(next_match_at, idle_since))
            self._wake.clear()

    def _sleep_s(self, next_match_at: float, idle_since: float) -> float:
        """Sleep until the next thing due: a tick, a match request, the idle deadline."""
        now = self._clock()
        due = [now + TICK_S]
        if not self._stop_requests and self._free_capacity().cores > 0:
            due.append(next_match_at)
        if not self._running:
            due.append(idle_since + self.config.idle_timeout_s)
        return max(0.0, min(due) - now)

    def request_stop(self, reason: str) -> None:
        """First call: drain (no new work). Second call: kill running payloads."""
        self._stop_requests += 1
        self._stop_reason = reason
        if self._stop_requests == 1:
            logger.warning("%s: taking no new jobs, letting %d finish", reason, len(self._running))
        else:
            logger.warning("%s again: killing %d running job(s)", reason, len(self._running))
            with self._lock:
                running = list(self._running.values())
            for job in running:
                job.run.kill(f"pilot received {reason}")
        self._wake.set()

    # -- start-up ----------------------------------------------------------------------

    def run_checks(self) -> list[CheckReport]:
        specs = [s for s in builtin_checks() if s.name not in self.config.disabled_checks]
        reports = run_checks(specs, workdir=self.config.workdir, options=self.config.check_options)
        for report in reports:
            logger.info("check %s: %s %s", report.name, report.status.value, report.message)
        return reports

    def _register(self, reports: list[CheckReport]) -> None:
        slot = detect_batch_slot(self._env)
        configured = self.config.time_left_s
        if configured is not None:
            self._slot_end_epoch_s = self._wall_clock() + configured
        else:
            self._slot_end_epoch_s = slot.end_epoch_s
        self._capacity = capacity_from_checks(reports, self.config.cores, self.config.memory_mb)
        fatal = [r for r in reports if r.fatal and r.status in _BAD_STATUSES]
        refuse_reason = "; ".join(f"{r.name}: {r.message}" for r in fatal)
        facts: dict[str, object] = {}
        for report in reports:
            facts.update(report.facts)
        registration = PilotRegistration(
            hostname=hostname(),
            pilot_version=__version__,
            site=self.config.site,
            ce=self.config.ce,
            batch_system=slot.batch_system,
            batch_job_id=slot.batch_job_id,
            cores=self._capacity.cores,
            memory_mb=self._capacity.memory_mb,
            disk_free_mb=int(facts.get("disk_free_mb", 0) or 0),  # type: ignore[call-overload]
            platform=str(facts.get("platform", "")),
            python_version=str(facts.get("python_version", "")),
            time_left_s=self._time_left_s(),
            tags=_tags(reports),
            facts=facts,
            checks=reports,
            accepting_work=not fatal,
            refuse_reason=refuse_reason,
        )
        self._registration = registration
        reply = self.client.register(registration)
        self.pilot_id = reply.pilot_id
        self._heartbeat_interval_s = reply.heartbeat_interval_s
        logger.info(
            "registered as pilot %s: %d cores, %d MB, platform %s",
            self.pilot_id,
            self._capacity.cores,
            self._capacity.memory_mb,
            registration.platform,
        )
        if fatal:
            raise FatalCheckFailed(refuse_reason)

    # -- matching and running ----------------------------------------------------------

    def _time_left_s(self) -> Optional[int]:
        if self._slot_end_epoch_s is None:
            return None
        return max(0, int(self._slot_end_epoch_s - self._wall_clock()))

    def _free_capacity(self) -> NodeCapacity:
        with self._lock:
            used_cores = sum(j.assignment.cores for j in self._running.values())
            used_mb = sum(j.assignment.memory_mb for j in self._running.values())
        return NodeCapacity(
            cores=self._capacity.cores - used_cores,
            memory_mb=max(0, self._capacity.memory_mb - used_mb),
        )

    def _match_and_start(self) -> tuple[bool, float]:
        free = self._free_capacity()
        request = MatchRequest(
            n=free.cores,
            cores_free=free.cores,
            memory_free_mb=free.memory_mb,
            time_left_s=self._time_left_s(),
            site=self.config.site,
            platform=self._registration.platform,
            tags=list(self._registration.tags),
        )
        asked_at = self._clock()
        reply = self.client.match(self.pilot_id, request)
        match_s = self._clock() - asked_at
        for assignment in reply.jobs:
            self._start(assignment, match_s)
        return bool(reply.jobs), reply.retry_after_s or self.config.poll_interval_s

    def _start(self, assignment: JobAssignment, match_s: float) -> None:
        job_id = assignment.job_id
        job = RunningJob(
            assignment=assignment,
            run=JobRun(
                assignment,
                self.config.workdir / f"job_{job_id}",
                self.client,
                self._wrapper_config,
                on_running=lambda: self._report_running(job_id),
            ),
            match_s=match_s,
            started_at=self._clock(),
            next_heartbeat_at=self._clock() + self._heartbeat_interval_s,
        )
        job.thread = threading.Thread(
            target=self._run_job, args=(job,), name=f"job-{job_id}", daemon=True
        )
        with self._lock:
            self._running[job_id] = job
        logger.info("job %d: starting %s", job_id, assignment.executable)
        job.thread.start()

    def _report_running(self, job_id: int) -> None:
        update = JobStatusUpdate(status=JobStatus.RUNNING, minor_status="Application")
        try:
            self.client.update_status(self.pilot_id, job_id, update)
        except CoordinatorRejected as exc:
            logger.warning("job %d: Running refused (%s): not running it", job_id, exc)
            with self._lock:
                job = self._running.get(job_id)
            if job is not None:
                job.run.kill(f"coordinator refused Running: {exc.message}")

    def _run_job(self, job: RunningJob) -> None:
        try:
            job.outcome = job.run.run()
        except Exception:  # boundary: a wrapper bug must not take the pilot down silently
            logger.exception("job %d: wrapper crashed", job.assignment.job_id)
        finally:
            job.finished = True
            self._wake.set()

    def _reap_finished(self) -> None:
        with self._lock:
            done = [j for j in self._running.values() if j.finished]
        for job in done:
            self._report_final(job)
            with self._lock:
                del self._running[job.assignment.job_id]
            self.jobs_done += 1
            failed = job.outcome is None or job.outcome.status is JobStatus.FAILED
            if self._guard.record(failed, self._clock() - job.started_at):
                logger.error(
                    "black-hole guard: %d jobs in a row failed fast; taking no more jobs",
                    self._guard.fast_failures_in_a_row,
                )

    def _report_final(self, job: RunningJob) -> None:
        outcome = job.outcome
        job_id = job.assignment.job_id
        if outcome is None:
            update = JobStatusUpdate(status=JobStatus.FAILED, minor_status="Job wrapper crashed")
        else:
            timings = dict(outcome.timings_s)
            timings["match"] = round(job.match_s, 6)
            update = JobStatusUpdate(
                status=outcome.status,
                minor_status=outcome.minor_status,
                application_status=outcome.application_status,
                exit_code=outcome.exit_code,
                output_sandbox=outcome.output_sandbox,
                timings_s=timings,
                cpu_s=outcome.cpu_s,
                max_rss_bytes=outcome.max_rss_bytes,
            )
        logger.info("job %d: %s (%s)", job_id, update.status.value, update.minor_status)
        try:
            self.client.update_status(self.pilot_id, job_id, update)
        except CoordinatorRejected as exc:
            logger.error("job %d: final status refused: %s", job_id, exc)

    def _send_heartbeats(self) -> None:
        now = self._clock()
        with self._lock:
            due = [
                j for j in self._running.values() if not j.finished and j.next_heartbeat_at <= now
            ]
        for job in due:
            job.next_heartbeat_at = now + self._heartbeat_interval_s
            cpu_s, rss_bytes = job.run.usage()
            beat = Heartbeat(cpu_s=cpu_s, rss_bytes=rss_bytes)
            try:
                reply = self.client.heartbeat(self.pilot_id, job.assignment.job_id, beat)
            except CoordinatorRejected as exc:
                logger.warning(
                    "job %d: heartbeat refused (%s): killing it", job.assignment.job_id, exc
                )
                job.run.kill(f"lease lost: {exc.message}")
                continue
            for command in reply.commands:
                if command.kind == CommandKind.KILL.value:
                    job.run.kill(command.reason or "killed on request")
                else:
                    logger.info("ignoring unknown command %r", command.kind)


_BAD_STATUSES = frozenset({CheckStatus.FAIL, CheckStatus.TIMEOUT})


def _tags(reports: list[CheckReport]) -> list[str]:
    tags: list[str] = []
    for report in reports:
        for tag in report.tags:
            if tag not in tags:
                tags.append(tag)
    return tags
