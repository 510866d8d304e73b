"""What users do with jobs: submit, look, kill, delete. No HTTP here; SQL only via store."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from coordinator.errors import BadRequest, NotFound
from coordinator.logic import sandboxes, states
from coordinator.logic.accounting import efficiency, held_cores
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import stored_mapping
from coordinator.logic.description import JobFields, job_fields, parse_description
from coordinator.logic.matching import normalise_sites
from coordinator.logic.paging import Page, PageRequest, paged
from coordinator.logic.parametric import expand, substitute_job_id
from coordinator.logic.sites import check_sites
from coordinator.logic.taskqueues import with_queues
from coordinator.settings import Settings
from coordinator.store import jobs as job_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from protocol import HistoryEntry, JobInfo, JobStatus, Role, SubmitRequest

logger = logging.getLogger(__name__)

FORMATS = ("jdl", "json", "yaml")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
IDENTITY_ATTRIBUTES = ("Owner", "OwnerGroup", "VO")
"""Set from the submitter's token; whatever the description says is replaced."""

# (status, minor status, source) of each step a new job goes through, as DIRAC logs them.
SUBMISSION_LOG: tuple[tuple[JobStatus, str, str], ...] = (
    (JobStatus.RECEIVED, "Job accepted", "JobManager"),
    (JobStatus.CHECKING, "JobSanity", "JobSanity"),
    (JobStatus.WAITING, "Pilot Agent Submission", "JobScheduling"),
)
KILL_MINOR_STATUS = "Marked for termination"
SANDBOX_LINK_BYTES = 80
"""What one job's link to one input sandbox counts against the submission's size."""


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is a lowercase hex sha256, else raise ``BadRequest``."""
    if not SHA256_PATTERN.fullmatch(digest):
        raise BadRequest(
            "a sandbox digest must be 64 lowercase hex characters", details={"sha256": digest}
        )
    return digest


def submit(
    db: Database, settings: Settings, claims: TokenClaims, request: SubmitRequest
) -> list[int]:
    """Store every job the description expands to; they come out Waiting."""
    fmt = request.format.lower()
    if fmt not in FORMATS:
        raise BadRequest(
            f"unknown description format {request.format!r}",
            details={"format": request.format, "allowed": list(FORMATS)},
        )
    description = parse_description(request.description, fmt)
    digests = list(dict.fromkeys(check_digest(d) for d in request.input_sandboxes))
    expanded = expand(
        description,
        max_jobs=settings.max_jobs_per_submission,
        max_bytes=settings.max_submission_bytes,
        # Each job also stores a link to each input sandbox (a digest and its position).
        bytes_per_job=len(digests) * SANDBOX_LINK_BYTES,
    )
    owned = [_with_identity(item, claims) for item in expanded]
    fields = [job_fields(item) for item in owned]
    check_sites(fields, settings.sites)
    rows = [_job_row(item, job, claims) for item, job in zip(owned, fields)]
    with db.write() as conn:
        sandboxes.check_owned(conn, claims, digests)
        job_ids = job_store.insert_jobs(conn, with_queues(conn, rows))
        _substitute_job_ids(conn, job_ids, owned)
        job_store.add_history(conn, _submission_history(job_ids))
        job_store.link_sandboxes(conn, job_ids, job_store.IN, digests)
    logger.info("%s (%s) submitted %d job(s)", claims.subject, claims.vo, len(job_ids))
    return job_ids


def _with_identity(description: Mapping[str, Any], claims: TokenClaims) -> dict[str, Any]:
    reserved = {name.lower() for name in IDENTITY_ATTRIBUTES}
    result = {k: v for k, v in description.items() if k.lower() not in reserved}
    result.update({"Owner": claims.subject, "OwnerGroup": claims.group, "VO": claims.vo})
    return result


def _job_row(
    description: Mapping[str, Any], fields: JobFields, claims: TokenClaims
) -> dict[str, Any]:
    allowed = normalise_sites(fields.site, fields.sites)
    return {
        "status": JobStatus.WAITING.value,
        "minor_status": SUBMISSION_LOG[-1][1],
        "application_status": "Unknown",
        "owner": claims.subject,
        "owner_group": claims.group,
        "vo": claims.vo,
        "job_name": fields.job_name,
        "job_group": fields.job_group,
        "description": json.dumps(description),
        "site": site_label(allowed),
        "req_sites": json.dumps(sorted(allowed)),
        "banned_sites": json.dumps(sorted(fields.banned_sites)),
        "platform": fields.platform,
        "tags": json.dumps(sorted(set(fields.tags))),
        "cores": fields.min_cores,
        "max_cores": fields.max_cores,
        "max_ram_mb": fields.max_ram_mb,
        "cpu_time_s": fields.cpu_time_s,
        "wall_time_s": fields.wall_time_s,
        "container": fields.container,
        "gpus": fields.gpus,
        "gpu_memory_mb": fields.gpu_memory_mb,
        "gpu_capability": fields.gpu_capability,
        "gpu_models": json.dumps(sorted(set(fields.gpu_models))),
        "whole_node": fields.whole_node,
        "min_cpu_score": fields.min_cpu_score,
        "priority": fields.priority,
    }


def site_label(allowed: frozenset[str]) -> str:
    if not allowed:
        return "ANY"
    if len(allowed) == 1:
        return next(iter(allowed))
    return "Multiple"


def _substitute_job_ids(
    conn: Connection, job_ids: Sequence[int], descriptions: Sequence[Mapping[str, Any]]
) -> None:
    """Replace ``%j`` now that ids exist; only rows whose description changed are rewritten."""
    changes = []
    for job_id, description in zip(job_ids, descriptions):
        final = substitute_job_id(dict(description), job_id)
        if final != description:
            fields = job_fields(final)
            changes.append(
                {
                    "id": job_id,
                    "description": json.dumps(final),
                    "job_name": fields.job_name,
                    "job_group": fields.job_group,
                }
            )
    job_store.rewrite_descriptions(conn, changes)


def _submission_history(job_ids: Sequence[int]) -> list[dict[str, Any]]:
    path = [status for status, _minor, _source in SUBMISSION_LOG]
    for current, new in zip(path, path[1:]):
        states.check_transition(current, new)
    return [
        {
            "job_id": job_id,
            "status": status.value,
            "minor_status": minor,
            "application_status": "Unknown",
            "source": source,
        }
        for job_id in job_ids
        for status, minor, source in SUBMISSION_LOG
    ]


def job_info(row: Row) -> JobInfo:
    return JobInfo(
        job_id=int(row["job_id"]),
        status=JobStatus(row["status"]),
        minor_status=row["minor_status"],
        application_status=row["application_status"],
        site=row["site"],
        job_name=row["job_name"],
        job_group=row["job_group"],
        owner=row["owner"],
        owner_group=row["owner_group"],
        vo=row["vo"],
        pilot_id=row["pilot_id"],
        exit_code=row["exit_code"],
        output_sandbox=row["output_sandbox"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        # Lists read rows without the description (store.jobs.SUMMARY_COLUMNS).
        description=stored_mapping(row.get("description")),
        reschedule_count=int(row["reschedule_count"]),
        **_reported_usage(row),
    )


def _reported_usage(row: Row) -> dict[str, Any]:
    """Timings, CPU, peak memory, cores and GPUs from the pilot's final report, and the CPU
    efficiency over the cores held, for ``JobInfo``."""
    accounting = stored_mapping(row["accounting"])
    timings = dict(accounting.get("timings_s") or {})
    cores = held_cores(accounting, row.get("cores"))
    gpus = accounting.get("gpus")
    return {
        "timings_s": timings,
        "cpu_s": accounting.get("cpu_s"),
        "max_rss_bytes": accounting.get("max_rss_bytes"),
        "cores": cores,
        "gpus": gpus if isinstance(gpus, int) and not isinstance(gpus, bool) else None,
        "cpu_efficiency": efficiency(accounting.get("cpu_s"), timings.get("payload"), cores),
    }


def can_see(claims: TokenClaims, row: Row) -> bool:
    """Users see their own jobs in their VO, admins every job, pilots their VO's jobs."""
    if claims.role is Role.ADMIN:
        return True
    if claims.role is Role.PILOT:
        return bool(row["vo"] == claims.vo)
    return bool(row["owner"] == claims.subject and row["vo"] == claims.vo)


def visible_job(conn: Connection, claims: TokenClaims, job_id: int, *, lock: bool = False) -> Row:
    """The job row, or ``NotFound`` also when it exists but is not the caller's to see.
    ``lock`` when the caller writes from what it read (see ``job_store.get_job``)."""
    row = job_store.get_job(conn, job_id, lock=lock)
    if row is None or not can_see(claims, row):
        raise NotFound(f"no job {job_id}", details={"job_id": job_id})
    return row


def get_job(db: Database, claims: TokenClaims, job_id: int) -> JobInfo:
    with db.read() as conn:
        return job_info(visible_job(conn, claims, job_id))


def get_jobs(db: Database, claims: TokenClaims, job_ids: Sequence[int]) -> list[JobInfo]:
    """The given jobs the caller may see, without their descriptions (a list)."""
    with db.read() as conn:
        rows = job_store.get_jobs(conn, job_ids)
        return [job_info(row) for row in rows if can_see(claims, row)]


HISTORY_CURSOR = (int,)
"""A history page's cursor: the entry id of the last entry sent."""


def history(
    db: Database, claims: TokenClaims, job_id: int, page: PageRequest
) -> Page[HistoryEntry]:
    """One page of the job's history, oldest first."""
    with db.read() as conn:
        visible_job(conn, claims, job_id)
        after = page.after[0] if page.after else None
        rows = job_store.history_of(conn, job_id, after_id=after, limit=page.limit + 1)
    found = paged(rows, page, key=lambda entry: (int(entry["entry_id"]),))
    entries = [
        HistoryEntry(
            status=JobStatus(entry["status"]),
            minor_status=entry["minor_status"],
            application_status=entry["application_status"],
            source=entry["source"],
            at=entry["at"],
        )
        for entry in found.items
    ]
    return Page(items=entries, next_cursor=found.next_cursor)


def kill(db: Database, claims: TokenClaims, job_id: int) -> JobInfo:
    """Kill at once if no pilot holds the job, else flag it for the pilot's next heartbeat.

    As DIRAC's JobManager: a job whose status can no longer move to Killed (Done, Failed,
    Completed, Killed, Deleted) is left as it is, and so is one whose kill is already on its
    way; neither is an error. The answer's status tells which happened."""
    with db.write() as conn:
        row = visible_job(conn, claims, job_id, lock=True)
        current = JobStatus(row["status"])
        if not states.can_be_killed(current) or row["kill_requested"]:
            return job_info(row)
        held = current in states.KILL_BY_PILOT
        new = current if held else JobStatus.KILLED
        states.check_transition(current, new)
        job_store.change_status(
            conn,
            job_id,
            expected=current,
            status=new,
            minor_status=KILL_MINOR_STATUS,
            application_status=row["application_status"],
            source="JobManager",
            kill_requested=held,
        )
        logger.info("%s killed job %d (%s)", claims.subject, job_id, current.value)
        return job_info(visible_job(conn, claims, job_id))


def delete(db: Database, claims: TokenClaims, job_id: int) -> JobInfo:
    with db.write() as conn:
        row = visible_job(conn, claims, job_id, lock=True)
        current = JobStatus(row["status"])
        states.check_transition(current, JobStatus.DELETED)
        job_store.change_status(
            conn,
            job_id,
            expected=current,
            status=JobStatus.DELETED,
            minor_status="",
            application_status=row["application_status"],
            source="JobManager",
        )
        return job_info(visible_job(conn, claims, job_id))
