"""The pilot registry: who registered, where, with what node and checks, and which jobs
each pilot ran. Admins see every pilot; users and pilots see their VO's pilots."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from coordinator.errors import NotFound
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import stored_json, stored_mapping
from coordinator.logic.paging import Page, PageRequest, paged
from coordinator.store import pilots as pilot_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from protocol import CheckReport, PilotInfo, Role

logger = logging.getLogger(__name__)


PILOT_CURSOR = (str, str)
"""A pilot list's cursor: (registered_at, pilot_id) of the last pilot sent."""


def list_pilots(db: Database, claims: TokenClaims, page: PageRequest) -> Page[PilotInfo]:
    """One page of pilots, newest first."""
    vo = None if claims.role is Role.ADMIN else claims.vo
    after = (str(page.after[0]), str(page.after[1])) if page.after else None
    with db.read() as conn:
        rows = pilot_store.list_pilots(conn, vo=vo, limit=page.limit + 1, after=after)
        found = paged(rows, page, key=lambda row: (row["registered_at"], row["pilot_id"]))
        jobs = pilot_store.jobs_of(conn, [row["pilot_id"] for row in found.items])
    infos = [_info(row, _visible_jobs(claims, jobs[row["pilot_id"]])) for row in found.items]
    return Page(items=infos, next_cursor=found.next_cursor)


def get_pilot(db: Database, claims: TokenClaims, pilot_id: str) -> PilotInfo:
    with db.read() as conn:
        row = visible_pilot(conn, claims, pilot_id)
        jobs = pilot_store.jobs_of(conn, [pilot_id])[pilot_id]
    return _info(row, _visible_jobs(claims, jobs))


def visible_pilot(conn: Connection, claims: TokenClaims, pilot_id: str) -> Row:
    """The pilot's row if the caller may see it (admins: any; others: their VO's)."""
    row = pilot_store.get_pilot(conn, pilot_id)
    if row is None or (claims.role is not Role.ADMIN and row["vo"] != claims.vo):
        raise NotFound(f"no pilot {pilot_id}", details={"pilot_id": pilot_id})
    return row


def _visible_jobs(claims: TokenClaims, jobs: Sequence[Row]) -> list[int]:
    if claims.role is Role.USER:
        jobs = [job for job in jobs if (job["owner"], job["vo"]) == (claims.subject, claims.vo)]
    return [int(job["job_id"]) for job in jobs]


def _stored_list(text: str) -> list[Any]:
    value = stored_json(text, [])
    return value if isinstance(value, list) else []


def _stored_checks(text: str) -> list[CheckReport]:
    """The stored check results that still read as ``CheckReport``s (others are left out)."""
    reports = []
    for item in _stored_list(text):
        try:
            reports.append(CheckReport.from_dict(item))
        except ValueError:
            logger.warning("a stored check result does not read: %.80r", item)
    return reports


def _info(row: Row, job_ids: list[int]) -> PilotInfo:
    return PilotInfo(
        pilot_id=row["pilot_id"],
        subject=row["subject"],
        vo=row["vo"],
        hostname=row["hostname"],
        site=row["site"],
        ce=row["ce"],
        batch_system=row["batch_system"],
        batch_job_id=row["batch_job_id"],
        pilot_version=row["version"],
        protocol_version=int(row["protocol_version"]),
        platform=row["platform"],
        cores=int(row["cores"]),
        memory_mb=int(row["memory_mb"]),
        time_left_s=row["time_left_s"],
        tags=[str(tag) for tag in _stored_list(row["tags"])],
        facts=stored_mapping(row["facts"]),
        checks=_stored_checks(row["checks"]),
        accepting_work=bool(row["accepting_work"]),
        refuse_reason=row["refuse_reason"],
        registered_at=row["registered_at"],
        last_seen=row["last_seen"],
        job_ids=job_ids,
    )
