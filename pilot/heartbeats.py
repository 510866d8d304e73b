"""Heartbeats: one request per pilot and interval carrying every running job that is due.

When one job is due, every running job due within the next half interval goes in the same
request, so a pilot's jobs fall into step and it sends one heartbeat per interval however
many jobs it runs (each job is still heard from at least once per interval). The reply's
commands are acted on at once; a job whose lease the coordinator refuses is killed, and a
coordinator that cannot be reached changes nothing: the jobs go on.

A coordinator that refuses the whole batch (one older than the batched endpoint, or one
that no longer knows the pilot) is sent the per-job heartbeats instead, so each job gets
the answer it would have got before batching existed.

A job whose payload started without a Running report (``Feature.RUNNING_IN_HEARTBEAT``)
is due ``START_REPORT_DELAY_S`` after its start: its entry says ``started``, and the jobs
that start together (one match for several free slots) share one request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Callable, Optional

from pilot.client import CoordinatorClient, RetryPolicy, json_body
from pilot.errors import CoordinatorRejected, CoordinatorUnreachable
from pilot.slots import RunningJob
from protocol import (
    Command,
    CommandKind,
    Heartbeat,
    JobHeartbeat,
    PilotHeartbeat,
    PilotHeartbeatReply,
)

logger = logging.getLogger(__name__)

START_REPORT_DELAY_S = 0.5
"""How soon a payload's start is told: the starts of that half second share a request."""


def heartbeat_retry(interval_s: float, give_up: Optional[Callable[[], bool]] = None) -> RetryPolicy:
    """A heartbeat is worth retrying for half an interval: the next one comes anyway.
    ``give_up``: stop retrying at once (the pilot is stopping: its loop must see signals
    and the end of its drain, not wait on a coordinator that is gone)."""
    return RetryPolicy(max_retry_s=max(1.0, interval_s / 2), give_up=give_up)


def due_jobs(jobs: Iterable[RunningJob], now: float, interval_s: float) -> list[RunningJob]:
    """Nothing until a running job is due; then every running job due within half an
    interval (sending a little early costs nothing, a second request per interval does)."""
    running = [job for job in jobs if not job.finished]
    if not any(job.next_heartbeat_at <= now for job in running):
        return []
    horizon = now + interval_s / 2
    return [job for job in running if job.next_heartbeat_at <= horizon]


class HeartbeatSender:
    """Sends the due heartbeats of one pilot's jobs; remembers whether batching works."""

    def __init__(
        self,
        client: CoordinatorClient,
        pilot_id: str,
        give_up: Optional[Callable[[], bool]] = None,
    ) -> None:
        self.client = client
        self.pilot_id = pilot_id
        self.give_up = give_up
        self.batched = True
        """False once the coordinator turned out not to have the batched endpoint."""

    def send_due(self, jobs: Iterable[RunningJob], now: float, interval_s: float) -> None:
        due = due_jobs(jobs, now, interval_s)
        for job in due:
            job.next_heartbeat_at = now + interval_s
        if not due:
            return
        retry = heartbeat_retry(interval_s, self.give_up)
        beats = [
            JobHeartbeat(job.assignment.job_id, _heartbeat(job, now), job.start_unreported)
            for job in due
        ]
        if self.batched and self._send_batch(due, beats, retry, now):
            return
        for job, entry in zip(due, beats):
            self._send_one(job, entry.heartbeat, retry, now)

    def _send_batch(
        self, due: Sequence[RunningJob], beats: list[JobHeartbeat], retry: RetryPolicy, now: float
    ) -> bool:
        """True if the batch was answered (or could not be delivered: no point resending
        it job by job); False if refused as a whole."""
        try:
            path = f"/pilots/{self.pilot_id}/heartbeat"
            body = PilotHeartbeat(beats).to_dict()
            reply = PilotHeartbeatReply.from_dict(
                self.client.exchange("POST", path, json_body, retry=retry, json=body)
            )
        except CoordinatorUnreachable as exc:
            logger.warning("%d heartbeat(s) not delivered (%s); the jobs go on", len(due), exc)
            return True
        except CoordinatorRejected as exc:
            if exc.status in (404, 405) and "pilot_id" not in exc.details:
                logger.warning("the coordinator has no batched heartbeat; sending one per job")
                self.batched = False
            else:
                logger.warning("batched heartbeat refused (%s); sending one per job", exc)
            return False
        results = {result.job_id: result for result in reply.results}
        for job, beat in zip(due, beats):
            result = results.get(job.assignment.job_id)
            if result is None:
                logger.warning("job %d: no heartbeat result in the reply", job.assignment.job_id)
            elif result.ok:
                job.renewed_at = now
                if beat.started:
                    job.start_unreported = False
                _obey(job, result.commands)
            else:
                _refused(job, result.error.message if result.error else "refused")
        return True

    def _send_one(self, job: RunningJob, beat: Heartbeat, retry: RetryPolicy, now: float) -> None:
        job_id = job.assignment.job_id
        try:
            reply = self.client.heartbeat(self.pilot_id, job_id, beat, retry=retry)
        except CoordinatorRejected as exc:
            _refused(job, exc.message)
            return
        except CoordinatorUnreachable as exc:
            logger.warning("job %d: heartbeat not delivered (%s); the job goes on", job_id, exc)
            return
        job.renewed_at = now
        _obey(job, reply.commands)


def start_reported_soon(job: RunningJob, now: float) -> None:
    """Make a job whose payload just started due for a heartbeat soon (its start rides it)."""
    job.start_unreported = True
    job.next_heartbeat_at = min(job.next_heartbeat_at, now + START_REPORT_DELAY_S)


def _heartbeat(job: RunningJob, now: float) -> Heartbeat:
    cpu_s, rss_bytes = job.run.usage()
    offsets = job.logs.offsets() if job.logs is not None else {}
    return Heartbeat(
        cpu_s=cpu_s, rss_bytes=rss_bytes, wall_s=now - job.started_at, log_offsets=offsets
    )


def _refused(job: RunningJob, reason: str) -> None:
    logger.warning("job %d: heartbeat refused (%s): killing it", job.assignment.job_id, reason)
    job.run.kill(f"lease lost: {reason}")


def _obey(job: RunningJob, commands: Sequence[Command]) -> None:
    for command in commands:
        if command.kind == CommandKind.KILL.value:
            job.run.kill(command.reason or "killed on request")
        else:
            logger.info("ignoring unknown command %r", command.kind)
