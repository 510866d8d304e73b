"""The sweeper's query: held jobs not heard from since a cutoff. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, or_, select

from coordinator.store.precompiled import Row
from coordinator.store.schema import jobs
from protocol import JobStatus


def quiet_jobs(
    conn: Connection, statuses: Iterable[JobStatus], *, before: str, limit: int, lock: bool = False
) -> list[Row]:
    """Jobs in ``statuses`` whose last status change and last heartbeat are both older
    than ``before`` (a UTC timestamp from ``utc_timestamp``), oldest change first.

    ``lock``: the rows stay locked until the transaction ends and rows locked by another
    transaction are skipped (PostgreSQL's ``FOR UPDATE SKIP LOCKED``), so the sweepers of
    several coordinators take different jobs, and a pilot's report on a job cannot slip
    between the sweeper's read and its write."""
    query = (
        select(jobs)
        .where(
            jobs.c.status.in_([status.value for status in statuses]),
            jobs.c.updated_at < before,
            or_(jobs.c.heartbeat_at.is_(None), jobs.c.heartbeat_at < before),
        )
        .order_by(jobs.c.updated_at)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query).mappings())
