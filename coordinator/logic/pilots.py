"""What pilots do: register, ask for jobs, report progress (heartbeats: ``heartbeats``)."""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from coordinator.errors import BadRequest, LeaseLost, NotFound, PilotTooOld
from coordinator.logic import rescheduling, sandboxes, states
from coordinator.logic.auth import TokenClaims
from coordinator.logic.jobs import check_digest, job_info, visible_job
from coordinator.logic.matching import (
    ANY_SITE,
)
from coordinator.settings import Settings
from coordinator.store import jobs as job_store
from coordinator.store import pilots as pilot_store
from coordinator.store import requests as request_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from coordinator.store.schema import utc_timestamp
from protocol import (
    Feature,
    GpuInfo,
    JobInfo,
    JobStatus,
    JobStatusUpdate,
    PilotRegistration,
    RegistrationReply,
    __version__,
)

logger = logging.getLogger(__name__)

HEARTBEAT_STATES = frozenset(
    {JobStatus.MATCHED, JobStatus.RUNNING, JobStatus.COMPLETING, JobStatus.STALLED}
)
FEATURES = (Feature.RUNNING_IN_HEARTBEAT,)
"""What this coordinator tells pilots at registration that it does (``protocol.Feature``)."""
RUNNING_MINOR = "Application"
"""The minor status of a job whose payload runs (DIRAC's)."""
REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A pilot's request id: up to 64 letters, digits and ``_.:-`` (a uuid4 hex is 32)."""


def check_request_id(request_id: str) -> str:
    """``request_id`` if it is empty or well formed; ``BadRequest`` otherwise."""
    if request_id and not REQUEST_ID.fullmatch(request_id):
        raise BadRequest(
            "request_id must be 1 to 64 letters, digits or _.:-",
            details={"request_id": request_id[:80]},
        )
    return request_id


def check_protocol(version: int, settings: Settings) -> None:
    if version < settings.min_protocol_version:
        raise PilotTooOld(
            f"protocol {version} is older than the oldest this coordinator serves "
            f"({settings.min_protocol_version}); update the pilot",
            details={"protocol": version, "minimum": settings.min_protocol_version},
        )


def register(
    db: Database, settings: Settings, claims: TokenClaims, registration: PilotRegistration
) -> RegistrationReply:
    check_protocol(registration.protocol_version, settings)
    pilot_id = secrets.token_hex(12)
    row = _pilot_row(pilot_id, claims, registration)
    row["site"] = pilot_site(registration, settings.default_site)
    with db.write() as conn:
        pilot_store.insert_pilot(conn, row)
    logger.info(
        "pilot %s registered: %s at %s (%s, VO %s)",
        pilot_id,
        registration.hostname,
        row["site"],
        claims.subject,
        claims.vo,
    )
    return RegistrationReply(
        pilot_id=pilot_id,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        server_version=__version__,
        features=[feature.value for feature in FEATURES],
        job_lease_s=settings.heartbeat_timeout_s + settings.stalled_grace_s,
    )


def pilot_site(registration: PilotRegistration, default_site: str) -> str:
    """The site a pilot is recorded at, and so the Site its jobs show: the one it names,
    else the coordinator's default site, else its host. To DIRAC users ANY means "not yet
    assigned", which a job that ran somewhere is not."""
    named = registration.site.strip()
    if named and named.upper() != ANY_SITE:
        return named
    return default_site or registration.hostname or ANY_SITE


def _pilot_row(
    pilot_id: str, claims: TokenClaims, registration: PilotRegistration
) -> dict[str, Any]:
    return {
        "pilot_id": pilot_id,
        "subject": claims.subject,
        "vo": claims.vo,
        "hostname": registration.hostname,
        "site": registration.site or ANY_SITE,
        "ce": registration.ce,
        "batch_system": registration.batch_system,
        "batch_job_id": registration.batch_job_id,
        "version": registration.pilot_version,
        "protocol_version": registration.protocol_version,
        "platform": registration.platform,
        "cores": registration.cores,
        "memory_mb": registration.memory_mb,
        "time_left_s": registration.time_left_s,
        "facts": json.dumps(registration.facts, default=str),
        "checks": json.dumps([c.to_dict() for c in registration.checks], default=str),
        "tags": json.dumps(sorted(registration.tags)),
        "accepting_work": registration.accepting_work,
        "refuse_reason": registration.refuse_reason,
        "gpus": json.dumps([gpu.to_dict() for gpu in registered_gpus(registration.facts)]),
        "cpu_score": cpu_score(registration.facts),
        # At registration the one reason to refuse work is a failed fatal check.
        "stop_cause": "" if registration.accepting_work else "fatal_check",
    }


def registered_gpus(facts: Mapping[str, Any]) -> list[GpuInfo]:
    """The node's GPUs from its ``gpu`` check's ``gpus`` fact (those that read)."""
    found = facts.get("gpus")
    gpus = []
    for item in found if isinstance(found, list) else []:
        try:
            gpus.append(GpuInfo.from_dict({**item, "id": str(item.get("id", ""))}))
        except (AttributeError, TypeError, ValueError):
            continue
    return gpus


def cpu_score(facts: Mapping[str, Any]) -> float:
    """The node's CPU score: a site's ``cpu_score`` fact, else the ``cpuspeed`` check's."""
    for name in ("cpu_score", "db12_score"):
        value = facts.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value) if math.isfinite(value) else 0.0
    return 0.0


def own_pilot(conn: Connection, claims: TokenClaims, pilot_id: str, *, lock: bool = False) -> Row:
    """The pilot row if this token registered it; ``NotFound`` otherwise. ``lock`` as in
    ``job_store.get_job``."""
    return owned(pilot_store.get_pilot(conn, pilot_id, lock=lock), claims, pilot_id)


def owned(pilot: Row | None, claims: TokenClaims, pilot_id: str) -> Row:
    """``pilot`` (the row read for ``pilot_id``, or None) if this token registered it;
    ``NotFound`` otherwise."""
    if pilot is None or pilot["subject"] != claims.subject or pilot["vo"] != claims.vo:
        raise NotFound(f"no pilot {pilot_id}", details={"pilot_id": pilot_id})
    return pilot


def leased_job(conn: Connection, claims: TokenClaims, pilot_id: str, job_id: int) -> Row:
    """The job if it is matched to this (token's) pilot; ``LeaseLost`` if to another.
    Only writers ask, so the job's row stays locked until their transaction ends."""
    own_pilot(conn, claims, pilot_id)
    row = visible_job(conn, claims, job_id, lock=True)
    if row["pilot_id"] != pilot_id:
        raise LeaseLost(
            f"job {job_id} is not held by pilot {pilot_id}",
            details={"job_id": job_id, "pilot_id": pilot_id},
        )
    return row


def update_status(
    db: Database,
    settings: Settings,
    claims: TokenClaims,
    pilot_id: str,
    job_id: int,
    update: JobStatusUpdate,
) -> JobInfo:
    """Record a pilot's report; a report renews the lease like a heartbeat does.

    A report whose ``request_id`` was already applied (its first reply was lost) changes
    nothing: it is answered with the job as it is now, even if the job has moved on.
    """
    request_id = check_request_id(update.request_id)
    with db.write() as conn:
        if request_id:
            own_pilot(conn, claims, pilot_id)
            # The job's row locked first (PostgreSQL; jobs before pilots, as heartbeats
            # lock them): the same report retried through another replica while the first
            # is in flight waits for it and finds its record, instead of both finding none
            # and the second failing on the record's key.
            visible_job(conn, claims, job_id, lock=True)
            earlier = request_store.recall(conn, pilot_id, request_id, request_store.STATUS)
            if earlier is not None:
                if job_id not in earlier:
                    raise BadRequest(
                        f"request_id {request_id} was used for another job",
                        details={"request_id": request_id, "job_ids": earlier},
                    )
                logger.info("pilot %s: job %d report %s retried", pilot_id, job_id, request_id)
                return job_info(visible_job(conn, claims, job_id))
            request_store.remember(conn, pilot_id, request_id, request_store.STATUS, [job_id])
        row = leased_job(conn, claims, pilot_id, job_id)
        current = JobStatus(row["status"])
        if current is JobStatus.STALLED and not states.is_allowed(current, update.status):
            # The pilot is back: the job was running all along.
            rescheduling.revive(conn, row, update.source or "JobWrapper")
            current = JobStatus.RUNNING
        elif current is JobStatus.MATCHED and update.started and update.status in AFTER_RUNNING:
            # A payload that ended before its start rode a heartbeat: it ran.
            start_running(conn, row, update.source or "JobWrapper")
            current = JobStatus.RUNNING
        states.check_transition(current, update.status)
        columns = _report_columns(conn, claims, row, update)
        job_store.change_status(
            conn,
            job_id,
            expected=current,
            status=update.status,
            minor_status=update.minor_status or row["minor_status"],
            application_status=update.application_status or row["application_status"],
            source=update.source or "JobWrapper",
            heartbeat_at=utc_timestamp(),
            **columns,
        )
        if update.infrastructure_error and update.status is JobStatus.FAILED:
            rescheduling.reschedule(
                conn,
                row,
                current=JobStatus.FAILED,
                reason=f"infrastructure failure: {update.minor_status or 'reported by the pilot'}",
                source="JobManager",
                max_reschedules=settings.max_reschedules,
            )
        pilot_store.touch_pilot(conn, pilot_id)
        return job_info(visible_job(conn, claims, job_id))


AFTER_RUNNING = frozenset(
    {JobStatus.DONE, JobStatus.FAILED, JobStatus.KILLED, JobStatus.COMPLETING}
)
"""Final (or closing) reports that imply Running when they say the payload started."""


def start_running(conn: Connection, row: Row, source: str) -> bool:
    """Matched -> Running for a payload the pilot started; False if the job had moved on."""
    return job_store.change_status(
        conn,
        int(row["job_id"]),
        expected=JobStatus.MATCHED,
        status=JobStatus.RUNNING,
        minor_status=RUNNING_MINOR,
        application_status=row["application_status"],
        source=source,
        heartbeat_at=utc_timestamp(),
    )


def _report_columns(
    conn: Connection, claims: TokenClaims, row: Row, update: JobStatusUpdate
) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    if update.exit_code is not None:
        columns["exit_code"] = update.exit_code
    if update.output_sandbox:
        digest = check_digest(update.output_sandbox)
        sandboxes.claim_output(conn, claims, row, digest)
        columns["output_sandbox"] = digest
    accounting = json.loads(row["accounting"])
    if update.timings_s:
        accounting["timings_s"] = dict(update.timings_s)
    if update.cpu_s is not None:
        accounting["cpu_s"] = update.cpu_s
    if update.max_rss_bytes is not None:
        accounting["max_rss_bytes"] = update.max_rss_bytes
    if update.log_offsets:
        accounting["log_bytes"] = dict(update.log_offsets)
    if update.cores is not None:
        accounting["cores"] = update.cores
    if update.gpus is not None:
        accounting["gpus"] = update.gpus
    columns["accounting"] = json.dumps(accounting)
    return columns
