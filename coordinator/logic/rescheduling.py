"""Putting a job back to Waiting for another attempt, as DIRAC's ``rescheduleJob`` does.

Three paths lead here: the sweeper giving up on a lost lease (``coordinator.logic.leases``),
a pilot reporting an infrastructure failure, and a user's ``reschedule`` request. All of
them count against ``max_reschedules``: once a job has been rescheduled that many times the
automatic paths fail it with DIRAC's minor status ``Maximum of reschedulings reached``, and a
user's request is refused unless it resets the counter.

A rescheduled job loses its pilot (whose next heartbeat or report gets 409 ``lease_lost``),
its kill flag, the previous attempt's exit code, output and live logs, and goes back to its
task queue. The history shows ``Rescheduled`` (minor status: why) then ``Waiting``.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import Connection

from coordinator.errors import InvalidTransition, RescheduleLimit
from coordinator.logic import states, taskqueues
from coordinator.logic.auth import TokenClaims
from coordinator.logic.jobs import job_info, site_label, visible_job
from coordinator.settings import Settings
from coordinator.store import jobs as job_store
from coordinator.store import logs as log_store
from coordinator.store import pilots as pilot_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from coordinator.store.schema import utc_timestamp
from protocol import JobInfo, JobStatus

logger = logging.getLogger(__name__)

MAX_RESCHEDULING = "Maximum of reschedulings reached"
RESCHEDULED = "Job Rescheduled"
WAITING_MINOR = "Pilot Agent Submission"

S = JobStatus
USER_RESCHEDULABLE: frozenset[JobStatus] = frozenset(
    {S.DONE, S.FAILED, S.KILLED, S.COMPLETED, S.MATCHED, S.RUNNING, S.COMPLETING, S.STALLED}
)
"""Where a user may reschedule from. DIRAC's ``rescheduleJob`` restarts a job from any state
(it writes the new status without consulting the state machine); gridpilot leaves out the
states where there is nothing to restart (not yet or again Waiting, Deleted)."""


def reschedule(
    conn: Connection,
    row: Row,
    *,
    current: JobStatus,
    reason: str,
    source: str,
    max_reschedules: int,
) -> JobStatus:
    """Reschedule the job of ``row`` (now in ``current``) or, at the limit, fail it.

    Returns the job's new status: Waiting, or Failed when the limit was reached.
    """
    job_id = int(row["job_id"])
    count = int(row["reschedule_count"])
    if count >= max_reschedules:
        job_store.change_status(
            conn,
            job_id,
            expected=current,
            status=S.FAILED,
            minor_status=MAX_RESCHEDULING,
            application_status=row["application_status"],
            source=source,
        )
        logger.info("job %d not rescheduled again (%d times already): Failed", job_id, count)
        return S.FAILED
    states.check_transition(current, S.RESCHEDULED)
    _restart(conn, row, current=current, reason=reason, source=source, count=count + 1)
    return S.WAITING


def _restart(
    conn: Connection,
    row: Row,
    *,
    current: JobStatus,
    reason: str,
    source: str,
    count: int,
) -> None:
    job_id = int(row["job_id"])
    if row["pilot_id"]:
        pilot_store.record_released_job(conn, row["pilot_id"], job_id)
    job_store.change_status(
        conn,
        job_id,
        expected=current,
        status=S.RESCHEDULED,
        minor_status=f"{RESCHEDULED}: {reason}" if reason else RESCHEDULED,
        application_status="Unknown",
        source=source,
        pilot_id="",
        kill_requested=False,
        reschedule_count=count,
        heartbeat_at=None,
        exit_code=None,
        output_sandbox="",
        accounting="{}",
        site=site_label(frozenset(json.loads(row["req_sites"]))),
    )
    job_store.change_status(
        conn,
        job_id,
        expected=S.RESCHEDULED,
        status=S.WAITING,
        minor_status=WAITING_MINOR,
        application_status="Unknown",
        source="JobScheduling",
    )
    log_store.clear(conn, log_store.JOB, str(job_id))
    taskqueues.requeue(conn, [job_id])
    logger.info("job %d rescheduled (%d): %s", job_id, count, reason or "by request")


def reschedule_job(
    db: Database, settings: Settings, claims: TokenClaims, job_id: int, *, reset: bool = False
) -> JobInfo:
    """A user's (or admin's) reschedule of one job; ``reset`` zeroes the counter first."""
    with db.write() as conn:
        row = visible_job(conn, claims, job_id, lock=True)
        current = JobStatus(row["status"])
        if current not in USER_RESCHEDULABLE:
            raise InvalidTransition(
                f"job {job_id} is {current.value}; only jobs that ran or were given to a "
                "pilot can be rescheduled",
                details={"from": current.value, "to": S.RESCHEDULED.value},
            )
        count = 0 if reset else int(row["reschedule_count"])
        if count >= settings.max_reschedules:
            raise RescheduleLimit(
                f"job {job_id} was rescheduled {count} times already, the maximum; "
                "reschedule with reset to start counting again",
                details={"job_id": job_id, "reschedule_count": count},
            )
        _restart(conn, row, current=current, reason="", source="JobManager", count=count + 1)
        logger.info("%s rescheduled job %d from %s", claims.subject, job_id, current.value)
        return job_info(visible_job(conn, claims, job_id))


def revive(conn: Connection, row: Row, source: str) -> None:
    """A Stalled job's pilot was heard from again: back to Running (DIRAC allows it)."""
    states.check_transition(S.STALLED, S.RUNNING)
    job_store.change_status(
        conn,
        int(row["job_id"]),
        expected=S.STALLED,
        status=S.RUNNING,
        minor_status="Job heard from again after stalling",
        application_status=row["application_status"],
        source=source,
        heartbeat_at=utc_timestamp(),
    )
    logger.info("job %d is Running again: its pilot %s came back", row["job_id"], row["pilot_id"])
