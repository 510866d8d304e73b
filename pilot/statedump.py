"""The pilot's state as log lines: what SIGUSR1 asks for."""

from __future__ import annotations

import logging
from typing import Optional

from pilot.slots import Slots
from pilot.stopping import StopState
from pilot.tally import JobTally

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


def log_state(
    pilot_id: str,
    stop: StopState,
    slots: Slots,
    tally: JobTally,
    time_left_s: Optional[int],
    kept_reports: int,
    now: float,
) -> None:
    free, total = slots.free(), slots.capacity
    logger.info(
        "state: pilot %s, stopping=%s (%s), %d/%d cores and %d/%d MB free, "
        "time left %s s, %s, kept reports=%d",
        *(pilot_id, stop.cause.value if stop.cause else "no", stop.reason),
        *(free.cores, total.cores, free.memory_mb, total.memory_mb, time_left_s),
        *(tally.summary(), kept_reports),
    )
    for job in slots.jobs():
        cpu_s, rss_bytes = job.run.usage()
        logger.info(
            "state: job %d running %.0f s on %d core(s): cpu %.1f s, rss %d MB, %s",
            *(job.assignment.job_id, now - job.started_at, job.assignment.cores),
            *(cpu_s, rss_bytes // MIB, job.assignment.executable),
        )
