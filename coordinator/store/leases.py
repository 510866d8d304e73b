"""The sweeper's query: held jobs not heard from since a cutoff. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, or_, select

from coordinator.store.precompiled import Row
from coordinator.store.schema import jobs
from protocol import JobStatus


def quiet_jobs(
    conn: Connection, statuses: Iterable[JobStatus], *, before: str, limit: int
) -> list[Row]:
    """Jobs in ``statuses`` whose last status change and last heartbeat are both older
    than ``before`` (a UTC timestamp from ``utc_timestamp``), oldest change first."""
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
    return list(conn.execute(query).mappings())
