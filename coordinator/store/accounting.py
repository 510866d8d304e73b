"""Queries behind the accounting plots. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from sqlalchemy import Connection, RowMapping, Select, func, select

from coordinator.store.schema import job_history, jobs

HOUR_PREFIX_CHARS = 13
"""``2026-01-31T12`` of an ISO time: its hour, as text that sorts."""


def _scoped(statement: Select[Any], owner: Optional[str], vo: Optional[str]) -> Select[Any]:
    if owner is not None:
        statement = statement.where(jobs.c.owner == owner)
    if vo is not None:
        statement = statement.where(jobs.c.vo == vo)
    return statement


def statuses_per_hour(
    conn: Connection,
    statuses: Sequence[str],
    since: str,
    owner: Optional[str],
    vo: Optional[str],
) -> list[tuple[str, str, int]]:
    """(hour, status, jobs that reached it in that hour) since ``since``."""
    hour = func.substr(job_history.c.at, 1, HOUR_PREFIX_CHARS)
    statement = (
        select(hour.label("hour"), job_history.c.status, func.count())
        .join(jobs, jobs.c.job_id == job_history.c.job_id)
        .where(job_history.c.status.in_(list(statuses)), job_history.c.at >= since)
        .group_by(hour, job_history.c.status)
    )
    statement = _scoped(statement, owner, vo)
    return [(str(h), str(s), int(n)) for h, s, n in conn.execute(statement)]


def histories_touching(
    conn: Connection, since: str, active: Sequence[str], owner: Optional[str], vo: Optional[str]
) -> list[RowMapping]:
    """Every history entry (with the job's site) of the jobs changed since ``since`` or now
    in one of ``active``: the only jobs that can have been running in the window."""
    touched = _scoped(
        select(jobs.c.job_id).where((jobs.c.updated_at >= since) | jobs.c.status.in_(list(active))),
        owner,
        vo,
    )
    statement = (
        select(job_history.c.job_id, job_history.c.status, job_history.c.at, jobs.c.site)
        .join(jobs, jobs.c.job_id == job_history.c.job_id)
        .where(job_history.c.job_id.in_(touched.scalar_subquery()))
        .order_by(job_history.c.job_id, job_history.c.entry_id)
    )
    return list(conn.execute(statement).mappings())


def finished_since(
    conn: Connection,
    statuses: Sequence[str],
    since: str,
    owner: Optional[str],
    vo: Optional[str],
) -> list[RowMapping]:
    """Jobs now in one of ``statuses`` that got there since ``since``: the columns the
    efficiency and failure summaries need."""
    statement = select(
        jobs.c.job_id,
        jobs.c.status,
        jobs.c.minor_status,
        jobs.c.site,
        jobs.c.owner,
        jobs.c.cores,
        jobs.c.accounting,
    ).where(jobs.c.status.in_(list(statuses)), jobs.c.updated_at >= since)
    return list(conn.execute(_scoped(statement, owner, vo)).mappings())
