"""The pilot's loop: checks -> register -> match -> run (N slots) -> report -> repeat/exit.

One readable loop in ``Agent._loop``. Each job runs in its own thread through the wrapper
and reports its own final state (``pilot.reporting``); the loop thread alone matches, sends
heartbeats, re-runs checks, resends kept reports and decides when to stop. It sleeps on a
self-pipe (``pilot.signals``) that job threads and signal handlers write to, so it reacts at
once and a signal handler never takes a lock.

Stopping (``pilot.stopping``): a signal, a fatal check failing on a re-run, the black-hole
guard and too little time left all mean "take no new work, let the running jobs finish, then
exit", and the coordinator is told why (``PilotStateUpdate``). Only for signals is the drain
bounded: a second signal, or ``drain_grace_s`` passing, kills the running payloads, and from
then on (as at any exit) everything the pilot still sends has ``exit_grace_s`` to get
through (``CoordinatorClient.exit_within``); what does not stays in the spool.

Payloads die with the pilot (``wrapper.sentinel``), a root pilot gives each job a uid of
its own (``wrapper.identity``), and a job whose lease the pilot could not renew for nearly
the coordinator's ``job_lease_s`` is stopped before the coordinator gives it to another
pilot (``_fence``): one running copy of a job at most, while this pilot lives.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional

from checks.api import CheckSpec
from checks.builtin.batch_slot import detect_batch_slot
from checks.builtin.health_probe import coordinator_facts
from checks.discovery import discover
from checks.runner import run_checks
from pilot.client import CoordinatorClient, RetryPolicy
from pilot.config import PilotConfig
from pilot.containers import RuntimeOffer
from pilot.errors import BlackHoleStop, CoordinatorUnreachable, FatalCheckFailed, PilotError
from pilot.guard import BlackHoleGuard
from pilot.hardening import prepare_workdir
from pilot.heartbeats import HeartbeatSender, start_reported_soon
from pilot.joblogs import job_log_shipper
from pilot.rechecks import RecheckSchedule
from pilot.registration import (
    build_registration,
    fatal_failures,
    match_request,
    refuse_reason,
    slot_end_epoch_s,
)
from pilot.reporting import (
    JobReporter,
    RunningAnswer,
    final_update,
    held_resources,
    new_request_id,
)
from pilot.sandboxes import SandboxTransport
from pilot.signals import DUMP_SIGNAL, SignalInbox, Waker, signal_name
from pilot.slots import NodeCapacity, RunningJob, Slots, capacity_from_checks
from pilot.spool import ResultSpool
from pilot.statedump import log_state
from pilot.stopping import StopCause, StopState
from pilot.tally import JobTally
from pilot.widejobs import WideJobHold
from protocol import (
    CheckReport,
    Feature,
    JobAssignment,
    PilotRegistration,
    PilotStateUpdate,
)
from wrapper.identity import UidPool, parse_uid_range
from wrapper.job import JobRun
from wrapper.sentinel import Sentinel

logger = logging.getLogger(__name__)

TICK_S = 1.0
"""Longest the loop sleeps: bounds how late a heartbeat or a deadline is handled."""
STATE_REPORT_RETRY = RetryPolicy(max_retry_s=10.0)
"""Telling the coordinator we stop is worth a short retry, not holding up the exit."""


class PilotExit(enum.Enum):
    IDLE = "idle"
    """No work for ``idle_timeout_s``: the normal end."""
    NO_TIME_LEFT = "no_time_left"
    STOPPED = "stopped"
    """Asked to stop (signal) and drained or killed its jobs."""


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
        self.waker = Waker()
        self.signals = SignalInbox(self.waker)
        self._slots = Slots(NodeCapacity(cores=1, memory_mb=0))
        self._stop = StopState()
        self.pilot_id = ""
        self.tally = JobTally(
            BlackHoleGuard(
                config.black_hole_failures, config.black_hole_window_s, config.black_hole_owners
            )
        )
        self._heartbeat_interval_s = 30.0
        self._running_in_heartbeat = False
        """The coordinator takes a job's start in the next heartbeat (registration says)."""
        self._heartbeats: Optional[HeartbeatSender] = None
        self._slot_end_epoch_s: Optional[float] = None
        self._registration: Optional[PilotRegistration] = None
        self._rechecks: Optional[RecheckSchedule] = None
        self.spool = ResultSpool(config.workdir)
        self._reporter = JobReporter(client, self.spool, config.report_retry_s, self._stop.hurried)
        # A pilot waiting for a dead coordinator must still obey the batch system's SIGTERM.
        self._loop_retry = RetryPolicy(
            max_retry_s=config.max_retry_s, give_up=self.signals.stop_pending
        )
        # The pilot's client retries transfers itself, for max_retry_s (or until the pilot's
        # exit deadline): the wrapper retrying those retries would multiply that time.
        self._wrapper_config = dataclasses.replace(config.wrapper, upload_retries=0)
        self._runtimes = RuntimeOffer(self._wrapper_config.containers)
        self._transport = SandboxTransport(client)
        self._sentinel: Optional[Sentinel] = None
        self._uids = UidPool(parse_uid_range(config.payload_uids))
        self._match_id: Optional[str] = None
        """The match request whose reply has not arrived: its retry reuses the id."""
        self._job_lease_s = 0.0
        self._state_report: Optional[threading.Thread] = None
        self._wide_jobs = WideJobHold(config.wide_job_patience_s)

    @property
    def jobs_done(self) -> int:
        return self.tally.finished

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> PilotExit:
        """Run until a reason to exit; raises FatalCheckFailed / BlackHoleStop for those."""
        prepare_workdir(self.config)
        self.spool.prepare()
        self._sentinel = self._start_sentinel()
        if len(self.spool):
            left = self._reporter.resend_spooled()
            logger.info("final reports kept by an earlier pilot: %d still undelivered", left)
        specs = self.check_specs()
        reports = self.run_checks(specs)
        try:
            self._register(reports)
        except CoordinatorUnreachable:
            if not self.signals.stop_pending():
                raise
            logger.warning("stopped by a signal before the coordinator could be reached")
            return PilotExit.STOPPED
        self._rechecks = RecheckSchedule(specs, self.config.recheck_interval_s, self._clock())
        return self._loop()

    def _loop(self) -> PilotExit:
        idle_since = next_match_at = next_resend_at = self._clock()
        while True:
            self._handle_signals()
            self._reap_finished()
            self._send_heartbeats()
            self._run_due_checks()
            if self._clock() >= next_resend_at:
                next_resend_at = self._clock() + self.config.spool_retry_interval_s
                if len(self.spool):
                    self._reporter.resend_spooled()
            self._enforce_drain_deadline()
            self._fence()
            self._check_time_left()
            if self._stop.stopping:
                if not len(self._slots):
                    return self._finish()
            elif self._clock() >= next_match_at and self._may_ask():
                asked_at = self._clock()
                started, retry_after_s = self._match_and_start()
                answered_at = self._clock()
                wait_s = 0.0 if started else min(retry_after_s, self.config.poll_interval_s)
                next_match_at = answered_at + wait_s
                # Waiting for the answer (retried while the coordinator was unreachable) is
                # not time without work: a coordinator back after an outage longer than
                # idle_timeout_s must not see its idle pilots leave at its first answer.
                idle_since += answered_at - asked_at
            if len(self._slots):
                idle_since = self._clock()
            elif self._clock() - idle_since >= self.config.idle_timeout_s:
                logger.info("no work for %.0f s: exiting", self.config.idle_timeout_s)
                return PilotExit.IDLE
            self.waker.wait(self._sleep_s(next_match_at, idle_since))

    def _sleep_s(self, next_match_at: float, idle_since: float) -> float:
        """Sleep until the next thing due: a tick, a match request, a deadline."""
        now = self._clock()
        due = [now + TICK_S]
        if not self._stop.stopping and self._may_ask():
            due.append(next_match_at)
        if not len(self._slots):
            due.append(idle_since + self.config.idle_timeout_s)
        if self._stop.drain_deadline is not None:
            due.append(self._stop.drain_deadline)
        # Starts not told yet are due sooner than the tick (pilot.heartbeats).
        due += [job.next_heartbeat_at for job in self._slots.jobs() if job.start_unreported]
        return max(0.0, min(due) - now)

    def _finish(self) -> PilotExit:
        cause, reason = self._stop.cause, self._stop.reason
        if cause is StopCause.BLACK_HOLE:
            raise BlackHoleStop(reason)
        if cause is StopCause.FATAL_CHECK:
            raise FatalCheckFailed(reason)
        if cause is StopCause.NO_TIME_LEFT:
            logger.info("exiting: %s", reason)
            return PilotExit.NO_TIME_LEFT
        return PilotExit.STOPPED

    def close(self) -> None:
        """Last try for kept reports, within ``exit_grace_s``; then the pilot may exit."""
        self.client.exit_within(self.config.exit_grace_s)
        if self._state_report is not None:
            self._state_report.join(timeout=self.config.exit_grace_s)
        self._reporter.flush_at_exit()
        if self._sentinel is not None:
            self._sentinel.close()
        self.signals.restore()
        self.waker.close()

    def _start_sentinel(self) -> Optional[Sentinel]:
        if threading.current_thread() is not threading.main_thread():
            logger.warning("not in the main thread: payloads will not die with this pilot")
            return None
        return Sentinel.start(self.config.workdir)

    def _hurry(self) -> None:
        """Payloads are being killed: the pilot's last words get ``exit_grace_s``."""
        self.client.exit_within(self.config.exit_grace_s)

    # -- stopping ----------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """First call: drain (no new work) within ``drain_grace_s``. Second: kill payloads."""
        self._stop.signals += 1
        running = len(self._slots)
        if self._stop.signals == 1:
            self._stop.drain_deadline = self._clock() + self.config.drain_grace_s
            self._begin_stop(StopCause.SIGNAL, f"received {reason}")
            logger.warning(
                "%s: taking no new jobs, letting %d running job(s) finish within %.0f s",
                reason,
                running,
                self.config.drain_grace_s,
            )
        else:
            logger.warning("%s again: killing %d running job(s)", reason, running)
            self._stop.hard = True
            self._hurry()
            self._slots.kill_all(f"pilot received {reason}")

    def _begin_stop(
        self, cause: StopCause, reason: str, checks: tuple[CheckReport, ...] = ()
    ) -> None:
        if not self._stop.begin(cause, reason) or not self.pilot_id:
            return
        update = PilotStateUpdate(
            accepting_work=False, reason=reason, checks=list(checks), cause=cause.value
        )
        # In a thread of its own: a coordinator that does not answer must not hold up the
        # drain (its deadline, the kill) for the state report's retries.
        self._state_report = threading.Thread(
            target=self._send_state, args=(update,), name="pilot-state", daemon=True
        )
        self._state_report.start()

    def _send_state(self, update: PilotStateUpdate) -> None:
        try:
            self.client.update_pilot_state(self.pilot_id, update, retry=STATE_REPORT_RETRY)
        except PilotError as exc:
            logger.warning("could not tell the coordinator that this pilot stops: %s", exc)

    def _handle_signals(self) -> None:
        for signum in self.signals.drain():
            if signum == DUMP_SIGNAL:
                self.dump_state()
            else:
                self.request_stop(signal_name(signum))

    def _enforce_drain_deadline(self) -> None:
        if self._stop.drain_expired(self._clock()) and len(self._slots):
            logger.warning(
                "drain grace of %.0f s expired: killing %d running job(s)",
                self.config.drain_grace_s,
                len(self._slots),
            )
            self._hurry()
            self._slots.kill_all(f"pilot drain grace expired after {self._stop.reason}")

    def _check_time_left(self) -> None:
        left = self._time_left_s()
        if left is not None and left < self.config.min_time_left_s:
            self._begin_stop(
                StopCause.NO_TIME_LEFT,
                f"{left} s left in the batch slot, less than min_time_left_s "
                f"({self.config.min_time_left_s:.0f} s): asking for no more jobs",
            )

    def dump_state(self) -> None:
        """SIGUSR1: what the pilot is doing, to the log."""
        left_s, kept = self._time_left_s(), len(self.spool)
        log_state(self.pilot_id, self._stop, self._slots, self.tally, left_s, kept, self._clock())

    # -- checks and registration -------------------------------------------------------

    def check_specs(self) -> list[CheckSpec]:
        specs = discover(self.config.checks)
        return [s for s in specs if s.name not in self.config.disabled_checks]

    def run_checks(self, specs: Optional[list[CheckSpec]] = None) -> list[CheckReport]:
        reports = run_checks(
            self.check_specs() if specs is None else specs,
            workdir=self.config.workdir,
            options=self.config.check_options,
            node_facts=coordinator_facts(
                self.config.url, self.config.ca_bundle, self.config.verify_tls
            ),
            search_path=self.config.checks.search_path,
        )
        for report in reports:
            logger.info("check %s: %s %s", report.name, report.status.value, report.message)
        return reports

    def _register(self, reports: list[CheckReport]) -> None:
        slot = detect_batch_slot(self._env)
        self._slot_end_epoch_s = slot_end_epoch_s(
            self.config.time_left_s, slot, reports, self._wall_clock()
        )
        cpus = sorted(os.sched_getaffinity(0)) if self.config.pin_cores else []
        capacity = capacity_from_checks(
            reports, self.config.cores, self.config.memory_mb, cpus=cpus
        )
        self._slots.capacity = capacity
        registration = build_registration(
            self.config, self._env, reports, slot, capacity, self._time_left_s()
        )
        self._registration = registration
        self._runtimes.register(registration.facts)
        reply = self.client.register(registration, retry=self._loop_retry)
        self.pilot_id = reply.pilot_id
        self._heartbeat_interval_s = reply.heartbeat_interval_s
        self._running_in_heartbeat = Feature.RUNNING_IN_HEARTBEAT.value in reply.features
        self._job_lease_s = reply.job_lease_s
        # Once stopping, one attempt per heartbeat: the loop must see the next signal and
        # the end of the drain in time (a coordinator gone would hold it half an interval).
        self._heartbeats = HeartbeatSender(
            self.client,
            self.pilot_id,
            give_up=lambda: self._stop.stopping or self.signals.stop_pending(),
        )
        logger.info(
            "registered as pilot %s at site %s (CE %r, batch %s %s): %d cores, %d MB, %s",
            *(self.pilot_id, registration.site, registration.ce),
            *(registration.batch_system or "none", registration.batch_job_id),
            *(capacity.cores, capacity.memory_mb, registration.platform),
        )
        if not registration.accepting_work:
            raise FatalCheckFailed(registration.refuse_reason)

    def _run_due_checks(self) -> None:
        if self._rechecks is None or self._stop.stopping:
            return
        due = self._rechecks.due(self._clock())
        if not due:
            return
        reports = self.run_checks(due)
        self._rechecks.ran(due, self._clock())
        failed = fatal_failures(reports)
        if failed:
            reason = refuse_reason(failed)
            logger.error("%s: taking no more jobs, draining", reason)
            self._begin_stop(StopCause.FATAL_CHECK, reason, tuple(reports))

    # -- matching and running ----------------------------------------------------------

    def _time_left_s(self) -> Optional[int]:
        if self._slot_end_epoch_s is None:
            return None
        return max(0, int(self._slot_end_epoch_s - self._wall_clock()))

    def _may_ask(self) -> bool:
        """Free cores, and none being held for a wide job (``pilot.widejobs``); always while
        a match's reply is lost: asked again, it replays the jobs the coordinator gave."""
        if self._match_id is not None:
            return True
        if self._uids.enabled and not self._uids.free():
            return False  # a job reporting still holds its uid: its reap wakes the loop
        free = self._slots.free().cores
        return free > 0 and not self._wide_jobs.holding(free, self._clock())

    def _match_and_start(self) -> tuple[bool, float]:
        assert self._registration is not None
        min_cores = self._wide_jobs.min_cores(self._clock())
        request = match_request(
            self._registration,
            self._slots.free(),
            self._time_left_s(),
            slot_policy=self.config.slot_policy,
            min_cores=min_cores,
        )
        if self._uids.enabled:  # one uid per job: no more jobs than free uids
            request = dataclasses.replace(request, n=min(request.n, self._uids.free()))
            if request.n < 1:
                return False, self.config.poll_interval_s
        # A match whose reply was lost is asked again with its id: the coordinator answers
        # with the jobs (and GPUs) it gave then, instead of leaving them Matched to nobody.
        self._match_id = self._match_id or new_request_id()
        request = dataclasses.replace(self._runtimes.apply(request), request_id=self._match_id)
        asked_at = self._clock()
        try:
            reply = self.client.match(self.pilot_id, request, retry=self._loop_retry)
        except CoordinatorUnreachable as exc:
            if not len(self._slots) and not self.signals.stop_pending():
                raise
            logger.warning("match failed (%s); running jobs go on, asking again later", exc)
            return False, self.config.poll_interval_s
        self._match_id = None
        match_s = self._clock() - asked_at
        self._wide_jobs.answered(min_cores, bool(reply.jobs), self._clock())
        self._wide_jobs.heard(reply.wider_job_cores, self._clock())
        for assignment in reply.jobs:
            self._start(assignment, match_s)
        return bool(reply.jobs), reply.retry_after_s or self.config.poll_interval_s

    def _start(self, assignment: JobAssignment, match_s: float) -> None:
        job_id = assignment.job_id
        workdir = self.config.workdir / f"job_{job_id}"
        logs = job_log_shipper(self.client, self.pilot_id, assignment, workdir)
        uid = self._uids.take()
        allocation = self._slots.allocate(assignment)
        job = RunningJob(
            assignment=assignment,
            run=JobRun(
                assignment,
                workdir,
                self._transport,
                self._wrapper_config,
                on_running=lambda: self._report_running(job),
                on_payload_started=lambda: self._payload_started(job),
                on_payload_lasting=lambda: self._payload_lasting(job),
                payload_user=uid,
                allocation=allocation,
            ),
            logs=logs,
            allocation=allocation,
            match_s=match_s,
            started_at=self._clock(),
            next_heartbeat_at=self._clock() + self._heartbeat_interval_s,
            uid=uid,
        )
        job.thread = threading.Thread(
            target=self._run_job, args=(job,), name=f"job-{job_id}", daemon=True
        )
        self._slots.add(job)
        logger.info(
            "job %d: starting %s on %d core(s)", job_id, assignment.executable, job.assignment.cores
        )
        job.thread.start()

    def _payload_started(self, job: RunningJob) -> None:
        job.payload_pid = job.run.payload_pid
        if self._sentinel is not None and job.payload_pid is not None:
            self._sentinel.watch(job.payload_pid)
        if job.logs is not None:
            job.logs.arm()  # its thread starts if the payload lasts (_payload_lasting)

    def _payload_lasting(self, job: RunningJob) -> None:
        if job.logs is not None:
            job.logs.start()

    def _report_running(self, job: RunningJob) -> None:
        if self._running_in_heartbeat:
            # No request: the start rides the next heartbeat, sent soon (pilot.heartbeats).
            start_reported_soon(job, self._clock())  # first: still Matched for _fence
            job.running_answer = RunningAnswer.IN_HEARTBEAT
            self.waker.wake()
            return
        job.running_answer = self._reporter.report_running(self.pilot_id, job.assignment.job_id)
        if job.running_answer is RunningAnswer.CONFIRMED:
            job.renewed_at = self._clock()  # a report renews the lease as a heartbeat does
        else:
            job.run.kill(f"Running {job.running_answer.value} by the coordinator")

    def _run_job(self, job: RunningJob) -> None:
        try:
            job.outcome = job.run.run()
        except Exception:  # boundary: a wrapper bug must not take the pilot down silently
            logger.exception("job %d: wrapper crashed", job.assignment.job_id)
        # The slot is free now: the loop matches its next job while this thread reports.
        job.payload_done = True
        self.waker.wake()
        try:
            offsets = None
            if job.logs is not None:
                # The coordinator refuses log bytes after the final status.
                offsets = job.logs.close()
            update = final_update(job.outcome, job.match_s, job.running_answer, offsets, job.fenced)
            pending = job.outcome.output_pending if job.outcome is not None else ""
            if update is not None:
                update = held_resources(update, job.assignment)
                self._reporter.report_final(
                    self.pilot_id, job.assignment.job_id, update, Path(pending) if pending else None
                )
        except Exception:  # boundary: same; the loop must still see the job finish
            logger.exception("job %d: final report crashed", job.assignment.job_id)
        finally:
            job.finished = True
            self.waker.wake()

    def _reap_finished(self) -> None:
        """Count the jobs whose payload is done and free what they held (their final
        reports may still be on their way: the next match need not wait for them, one
        round trip off each slot's path between two jobs), then forget the reported ones."""
        for job in self._slots.done_unreleased():
            self._account(job)
        for job in self._slots.take_finished():
            if not job.released:
                self._account(job)
            if self._sentinel is not None and job.payload_pid is not None:
                self._sentinel.release(job.payload_pid)
            self._uids.give_back(job.uid)

    def _account(self, job: RunningJob) -> None:
        """The job's outcome counted (black-hole guard, broken runtimes) before the loop
        may match into its cores."""
        job.released = True
        if job.outcome is not None:
            self._wrapper_config = self._runtimes.record(job.outcome, self._wrapper_config)
        black_hole = self.tally.record(job, self._clock() - job.started_at)
        if black_hole:
            logger.error("%s; taking no more jobs", black_hole)
            self._begin_stop(StopCause.BLACK_HOLE, black_hole)

    def _fence(self) -> None:
        """Stop jobs whose lease this pilot could not renew for nearly its length: the
        coordinator may give them to another pilot once it has passed."""
        margin_s = max(self._wrapper_config.kill_grace_s, self._heartbeat_interval_s)
        now = self._clock()
        for job in self._slots.jobs():
            lease_s = job.lease_s(self._job_lease_s)
            if lease_s <= 0 or job.fenced or job.finished:
                continue
            if now - job.renewed_at < lease_s - min(margin_s, lease_s / 2):
                continue
            job.fenced = True
            reason = (
                f"lease not renewed for {now - job.renewed_at:.0f} s (the coordinator gives "
                f"it to another pilot after {lease_s:.0f} s)"
            )
            logger.error("job %d: %s; stopping it", job.assignment.job_id, reason)
            job.run.kill(reason)

    def _send_heartbeats(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.send_due(self._slots.jobs(), self._clock(), self._heartbeat_interval_s)
