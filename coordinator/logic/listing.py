"""Listing jobs with filters and counts per status (``gridpilot jobs``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Optional

from coordinator.errors import BadRequest, Forbidden
from coordinator.logic.auth import TokenClaims
from coordinator.logic.jobs import can_see, job_info
from coordinator.logic.paging import PageRequest, paged
from coordinator.store import jobs as job_store
from coordinator.store.database import Database
from protocol import JobInfo, JobStatus, Role


@dataclasses.dataclass(frozen=True)
class JobFilter:
    statuses: tuple[JobStatus, ...] = ()
    owner: Optional[str] = None
    site: Optional[str] = None
    job_group: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class JobListing:
    jobs: list[JobInfo]
    """Without their descriptions: ``GET /jobs/{id}`` has them."""
    counts: dict[str, int]
    """Jobs per status matching every filter but the status one (Deleted left out)."""
    next_cursor: Optional[str] = None


def parse_statuses(text: Optional[str]) -> tuple[JobStatus, ...]:
    """``"Waiting,running"`` -> (Waiting, Running); case-insensitive, 400 on unknown names."""
    if not text:
        return ()
    by_name = {status.value.lower(): status for status in JobStatus}
    result = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in by_name:
            raise BadRequest(
                f"unknown job status {part.strip()!r}",
                details={"status": part.strip(), "allowed": [s.value for s in JobStatus]},
            )
        result.append(by_name[name])
    return tuple(dict.fromkeys(result))


JOB_CURSOR = (int,)
"""A job list's cursor: the id of the last job sent (lists go newest first)."""


def list_jobs(
    db: Database, claims: TokenClaims, wanted: JobFilter, page: PageRequest
) -> JobListing:
    """One page of the caller's jobs (every user's for admins), newest first, with counts
    per status over all pages.

    A user may name only themself as ``owner``: another user's jobs are not theirs to list.
    """
    owner, vo = _scope(claims, wanted.owner)
    scope = {"owner": owner, "vo": vo, "site": wanted.site, "job_group": wanted.job_group}
    excluded: Sequence[JobStatus] = (
        () if JobStatus.DELETED in wanted.statuses else (JobStatus.DELETED,)
    )
    with db.read() as conn:
        rows = job_store.list_jobs(
            conn,
            statuses=wanted.statuses,
            exclude=excluded,
            limit=page.limit + 1,
            before_id=page.after[0] if page.after else None,
            **scope,
        )
        counts = job_store.count_by_status(conn, **scope)
    counts.pop(JobStatus.DELETED.value, None)
    found = paged(rows, page, key=lambda row: (int(row["job_id"]),))
    infos = [job_info(row) for row in found.items if can_see(claims, row)]
    return JobListing(
        jobs=infos, counts=dict(sorted(counts.items())), next_cursor=found.next_cursor
    )


def _scope(claims: TokenClaims, owner: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(owner, vo) to filter on for this caller."""
    if claims.role is Role.ADMIN:
        return owner or None, None
    if owner and owner != claims.subject:
        raise Forbidden(
            "only admins may list other users' jobs",
            details={"owner": owner, "subject": claims.subject},
        )
    return claims.subject, claims.vo
