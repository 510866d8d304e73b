"""Heartbeats renew the leases of running jobs: one job at a time or a pilot's jobs at once.

``renew`` is the one rule both endpoints apply: the per-job endpoint turns a job's refusal
into its HTTP error, the per-pilot endpoint puts each refusal in that job's result, so one
lost lease never costs the other jobs of the batch their renewal. Either way the work is one
write transaction: one read of every row, one batched update, one touch of the pilot.

A batched entry may also say its payload started (``JobHeartbeat.started``, offered to
pilots as ``Feature.RUNNING_IN_HEARTBEAT``): a job still Matched becomes Running in the
same transaction, so a pilot starts its payloads without a Running report each.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import msgspec
from sqlalchemy import Connection

from coordinator.errors import BadRequest, CoordinatorError, LeaseLost, NotFound, TooLarge
from coordinator.logic import rescheduling
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import stored_mapping
from coordinator.logic.jobs import can_see
from coordinator.logic.pilots import HEARTBEAT_STATES, owned, start_running
from coordinator.store import jobs as job_store
from coordinator.store import pilots as pilot_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from coordinator.store.schema import utc_timestamp
from protocol import (
    Command,
    CommandKind,
    ErrorBody,
    HeartbeatReply,
    JobHeartbeat,
    JobHeartbeatResult,
    JobStatus,
    PilotHeartbeat,
    PilotHeartbeatReply,
)

logger = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(dict[str, Any]).decode

MAX_JOBS_PER_HEARTBEAT = 1000
"""Entries one ``PilotHeartbeat`` may carry: far more than a node runs, small enough that
one request never holds the write lock for long (about 0.1 ms a job on SQLite)."""


@dataclasses.dataclass(frozen=True)
class Renewal:
    """What became of one job's heartbeat: renewed (with its commands) or refused."""

    job_id: int
    refusal: Optional[CoordinatorError] = None
    commands: list[Command] = dataclasses.field(default_factory=list)

    def result(self) -> JobHeartbeatResult:
        if self.refusal is None:
            return JobHeartbeatResult(job_id=self.job_id, commands=self.commands)
        error = ErrorBody(self.refusal.code, self.refusal.message, self.refusal.details)
        return JobHeartbeatResult(job_id=self.job_id, ok=False, error=error)


def renew(
    conn: Connection, claims: TokenClaims, pilot_id: str, entries: Sequence[JobHeartbeat]
) -> list[Renewal]:
    """Renew each entry's lease if this pilot holds it; one result per entry, in order.

    ``NotFound`` (for the whole call) if the pilot is not this token's.
    """
    job_ids = _job_ids(entries)
    # Both sent before either is read: one round trip in a pipelined transaction.
    pilot = pilot_store.get_pilot_later(conn, pilot_id)
    jobs_found = job_store.get_jobs_later(conn, job_ids, lock=True)
    owned(pilot(), claims, pilot_id)
    found = jobs_found()
    rows = {int(row["job_id"]): row for row in found}
    now = utc_timestamp()
    renewals: list[Renewal] = []
    changes: list[dict[str, Any]] = []
    for entry in entries:
        row = rows.get(entry.job_id)
        refusal = _refusal(claims, pilot_id, entry.job_id, row)
        if refusal is not None or row is None:
            renewals.append(Renewal(entry.job_id, refusal=refusal))
            continue
        if row["status"] == JobStatus.STALLED.value:
            rescheduling.revive(conn, row, "Heartbeat")
        elif entry.started and row["status"] == JobStatus.MATCHED.value:
            start_running(conn, row, "JobWrapper")
        changes.append(_heartbeat_columns(row, entry, now))
        renewals.append(Renewal(entry.job_id, commands=_commands(row)))
    job_store.record_heartbeats(conn, changes, pilot_id)
    return renewals


def job_heartbeat(
    db: Database, claims: TokenClaims, pilot_id: str, entry: JobHeartbeat
) -> HeartbeatReply:
    """The per-job endpoint: a refusal is the HTTP error (and nothing is written)."""
    with db.write(pipelined=True) as conn:
        (renewal,) = renew(conn, claims, pilot_id, [entry])
        if renewal.refusal is not None:
            raise renewal.refusal
    return HeartbeatReply(commands=renewal.commands)


def pilot_heartbeat(
    db: Database, claims: TokenClaims, pilot_id: str, batch: PilotHeartbeat
) -> tuple[PilotHeartbeatReply, int]:
    """The per-pilot endpoint: every job's result, and how many leases were renewed."""
    if len(batch.jobs) > MAX_JOBS_PER_HEARTBEAT:
        raise TooLarge(
            f"a pilot heartbeat carries at most {MAX_JOBS_PER_HEARTBEAT} jobs, "
            f"this one {len(batch.jobs)}",
            details={"jobs": len(batch.jobs), "limit": MAX_JOBS_PER_HEARTBEAT},
        )
    with db.write(pipelined=True) as conn:
        renewals = renew(conn, claims, pilot_id, batch.jobs)
    renewed = sum(1 for renewal in renewals if renewal.refusal is None)
    if renewed < len(renewals):
        logger.info(
            "pilot %s: %d of %d heartbeats refused",
            pilot_id,
            len(renewals) - renewed,
            len(renewals),
        )
    return PilotHeartbeatReply(results=[renewal.result() for renewal in renewals]), renewed


def _job_ids(entries: Sequence[JobHeartbeat]) -> list[int]:
    job_ids = [entry.job_id for entry in entries]
    if len(set(job_ids)) != len(job_ids):
        raise BadRequest("a job appears twice in one heartbeat", details={"job_ids": job_ids})
    return job_ids


def _refusal(
    claims: TokenClaims, pilot_id: str, job_id: int, row: Optional[Row]
) -> Optional[CoordinatorError]:
    """The error the per-job endpoint answers for this job; None if the lease is held."""
    if row is None or not can_see(claims, row):
        return NotFound(f"no job {job_id}", details={"job_id": job_id})
    if row["pilot_id"] != pilot_id:
        return LeaseLost(
            f"job {job_id} is not held by pilot {pilot_id}",
            details={"job_id": job_id, "pilot_id": pilot_id},
        )
    status = JobStatus(row["status"])
    if status not in HEARTBEAT_STATES:
        return LeaseLost(
            f"job {job_id} is {status.value}; it is not running any more",
            details={"job_id": job_id, "status": status.value},
        )
    return None


def _heartbeat_columns(row: Row, entry: JobHeartbeat, now: str) -> dict[str, Any]:
    # msgspec's JSON and the fields as they are (a Heartbeat holds numbers and a dict of
    # numbers): the stdlib's json and to_dict's recursive walk were a third of a batched
    # heartbeat's CPU.
    accounting = _accounting(row["accounting"])
    beat: Mapping[str, Any] = vars(entry.heartbeat)
    accounting["last_heartbeat"] = {k: v for k, v in beat.items() if v is not None}
    encoded = _ENCODER.encode(accounting).decode()
    return {"id": entry.job_id, "heartbeat_at": now, "accounting": encoded}


def _accounting(text: str) -> dict[str, Any]:
    """The job's stored accounting, or, should the row hold anything else, what
    ``stored_mapping`` makes of it."""
    try:
        return _decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return stored_mapping(text)


def _commands(row: Row) -> list[Command]:
    if row["kill_requested"]:
        return [Command(kind=CommandKind.KILL.value, reason="killed by its owner")]
    return []
