"""One heartbeat per running job and interval; the reply's commands acted on at once."""

from __future__ import annotations

import logging

from pilot.client import CoordinatorClient, RetryPolicy
from pilot.errors import CoordinatorRejected, CoordinatorUnreachable
from pilot.protocol import CommandKind, Heartbeat
from pilot.slots import RunningJob

logger = logging.getLogger(__name__)


def heartbeat_retry(interval_s: float) -> RetryPolicy:
    """A heartbeat is worth retrying for half an interval: the next one comes anyway."""
    return RetryPolicy(max_retry_s=max(1.0, interval_s / 2))


def send_heartbeat(
    client: CoordinatorClient, pilot_id: str, job: RunningJob, wall_s: float, retry: RetryPolicy
) -> None:
    job_id = job.assignment.job_id
    cpu_s, rss_bytes = job.run.usage()
    offsets = job.logs.offsets() if job.logs is not None else {}
    beat = Heartbeat(cpu_s=cpu_s, rss_bytes=rss_bytes, wall_s=wall_s, log_offsets=offsets)
    try:
        reply = client.heartbeat(pilot_id, job_id, beat, retry=retry)
    except CoordinatorRejected as exc:
        logger.warning("job %d: heartbeat refused (%s): killing it", job_id, exc)
        job.run.kill(f"lease lost: {exc.message}")
        return
    except CoordinatorUnreachable as exc:
        logger.warning("job %d: heartbeat not delivered (%s); the job goes on", job_id, exc)
        return
    for command in reply.commands:
        if command.kind == CommandKind.KILL.value:
            job.run.kill(command.reason or "killed on request")
        else:
            logger.info("ignoring unknown command %r", command.kind)
