"""Leases: what happens to a job whose pilot has gone quiet (DIRAC's StalledJobAgent).

A job held by a pilot (Matched, Running, Completing, Stalled) keeps its lease while the pilot
is heard from: a heartbeat, a status report. The sweeper (``coordinator.sweeper``) calls
``sweep`` every ``sweep_interval_s``; ``decide`` is the pure rule it applies to each job:

- Matched and silent for ``match_timeout_s`` (never started): Rescheduled, as DIRAC does
  with matched jobs older than its ``MatchedTime``.
- Running or Completing and silent for ``heartbeat_timeout_s``: Stalled.
- Stalled for ``stalled_grace_s`` without its pilot coming back: Failed with DIRAC's
  ``Job stalled: pilot not running``, then Rescheduled (or left Failed with
  ``Maximum of reschedulings reached``). A heartbeat or report from the same pilot before
  then brings the job back to Running (``rescheduling.revive``).
- A job its owner asked to kill whose pilot stopped answering before passing the kill on:
  Killed, once silent for the timeout of its state.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Optional

from sqlalchemy import Connection

from coordinator.logic import rescheduling
from coordinator.settings import Settings
from coordinator.store import jobs as job_store
from coordinator.store import leases as lease_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from coordinator.store.schema import utc_timestamp
from protocol import JobStatus

logger = logging.getLogger(__name__)

SOURCE = "StalledJobAgent"
STALLED_PILOT_NOT_RUNNING = "Job stalled: pilot not running"
SWEEP_BATCH = 100
"""Jobs changed per write transaction: a sweep with much to do never holds the database's
write lock for long (a reschedule costs about 2 ms on SQLite)."""

S = JobStatus
RUNNING_STATES = frozenset({S.RUNNING, S.COMPLETING})


class LeaseAction(str, enum.Enum):
    STALL = "stall"
    RESCHEDULE = "reschedule"
    GIVE_UP = "give_up"
    KILL = "kill"


@dataclasses.dataclass(frozen=True)
class LeasePolicy:
    match_timeout_s: float
    heartbeat_timeout_s: float
    stalled_grace_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> LeasePolicy:
        return cls(
            match_timeout_s=settings.match_timeout_s,
            heartbeat_timeout_s=settings.heartbeat_timeout_s,
            stalled_grace_s=settings.stalled_grace_s,
        )

    def timeout_s(self, status: JobStatus) -> Optional[float]:
        """How long a job in ``status`` may stay silent; None if it holds no lease."""
        if status is S.MATCHED:
            return self.match_timeout_s
        if status in RUNNING_STATES:
            return self.heartbeat_timeout_s
        if status is S.STALLED:
            return self.stalled_grace_s
        return None


@dataclasses.dataclass(frozen=True)
class LeaseView:
    """What the rule needs to know of one job."""

    job_id: int
    status: JobStatus
    changed_at: datetime
    """When its status last changed."""
    heartbeat_at: Optional[datetime]
    kill_requested: bool = False

    @property
    def last_contact(self) -> datetime:
        if self.heartbeat_at is None:
            return self.changed_at
        return max(self.changed_at, self.heartbeat_at)

    @classmethod
    def of_row(cls, row: Row) -> LeaseView:
        heartbeat = row["heartbeat_at"]
        return cls(
            job_id=int(row["job_id"]),
            status=JobStatus(row["status"]),
            changed_at=datetime.fromisoformat(row["updated_at"]),
            heartbeat_at=datetime.fromisoformat(heartbeat) if heartbeat else None,
            kill_requested=bool(row["kill_requested"]),
        )


@dataclasses.dataclass(frozen=True)
class LeaseDecision:
    job_id: int
    status: JobStatus
    """The status the job was in when decided on: the change applies only if it still is."""
    action: LeaseAction
    reason: str


def decide(now: datetime, job: LeaseView, policy: LeasePolicy) -> Optional[LeaseDecision]:
    """The action a job's lease calls for at ``now``, or None while the lease holds."""
    timeout_s = policy.timeout_s(job.status)
    if timeout_s is None:
        return None
    since = job.changed_at if job.status is S.STALLED else job.last_contact
    silent_s = (now - since).total_seconds()
    if silent_s < timeout_s:
        return None
    if job.kill_requested:
        action, reason = LeaseAction.KILL, "its pilot stopped answering before the kill reached it"
    elif job.status is S.MATCHED:
        action, reason = LeaseAction.RESCHEDULE, f"not started {timeout_s:g} s after its match"
    elif job.status is S.STALLED:
        action, reason = LeaseAction.GIVE_UP, f"its pilot was silent for {silent_s:.0f} s"
    else:
        action, reason = LeaseAction.STALL, f"No heartbeat for {silent_s:.0f} s"
    return LeaseDecision(job.job_id, job.status, action, reason)


def decide_all(
    now: datetime, jobs: Iterable[LeaseView], policy: LeasePolicy
) -> list[LeaseDecision]:
    decisions = (decide(now, job, policy) for job in jobs)
    return [decision for decision in decisions if decision is not None]


def sweep(db: Database, settings: Settings, now: Optional[datetime] = None) -> list[LeaseDecision]:
    """Find expired leases and act on them.

    Each batch of at most ``SWEEP_BATCH`` jobs is one write transaction, so matches and
    reports wait for a short one at most; the write lock is not taken at all when a read
    finds nothing due.
    """
    policy = LeasePolicy.from_settings(settings)
    moment = now if now is not None else datetime.now(timezone.utc)
    decisions: list[LeaseDecision] = []
    for statuses, timeout_s in (
        ({S.MATCHED}, policy.match_timeout_s),
        (RUNNING_STATES, policy.heartbeat_timeout_s),
        ({S.STALLED}, policy.stalled_grace_s),
    ):
        before = utc_timestamp(moment - timedelta(seconds=timeout_s))
        with db.read() as conn:
            if not lease_store.quiet_jobs(conn, statuses, before=before, limit=1):
                continue
        while True:
            batch = _sweep_batch(db, settings, policy, moment, statuses, before)
            decisions.extend(batch)
            if len(batch) < SWEEP_BATCH:
                break
    for decision in decisions:
        logger.info(
            "job %d (%s): %s, %s",
            decision.job_id,
            decision.status.value,
            decision.action.value,
            decision.reason,
        )
    return decisions


def _sweep_batch(
    db: Database,
    settings: Settings,
    policy: LeasePolicy,
    moment: datetime,
    statuses: Iterable[JobStatus],
    before: str,
) -> list[LeaseDecision]:
    decisions = []
    with db.write() as conn:
        quiet = lease_store.quiet_jobs(conn, statuses, before=before, limit=SWEEP_BATCH, lock=True)
        for row in quiet:
            decision = decide(moment, LeaseView.of_row(row), policy)
            if decision is not None:
                _apply(conn, row, decision, settings)
                decisions.append(decision)
    return decisions


def _apply(conn: Connection, row: Row, decision: LeaseDecision, settings: Settings) -> None:
    job_id, current = decision.job_id, decision.status
    app_status = row["application_status"]
    if decision.action is LeaseAction.STALL:
        job_store.change_status(
            conn,
            job_id,
            expected=current,
            status=S.STALLED,
            minor_status=decision.reason,
            application_status=app_status,
            source=SOURCE,
        )
    elif decision.action is LeaseAction.KILL:
        job_store.change_status(
            conn,
            job_id,
            expected=current,
            status=S.KILLED,
            minor_status=f"Killed: {decision.reason}",
            application_status=app_status,
            source=SOURCE,
            kill_requested=False,
        )
    else:
        if decision.action is LeaseAction.GIVE_UP:
            job_store.change_status(
                conn,
                job_id,
                expected=current,
                status=S.FAILED,
                minor_status=STALLED_PILOT_NOT_RUNNING,
                application_status=app_status,
                source=SOURCE,
            )
            current = S.FAILED
        rescheduling.reschedule(
            conn,
            row,
            current=current,
            reason=decision.reason,
            source=SOURCE,
            max_reschedules=settings.max_reschedules,
        )
