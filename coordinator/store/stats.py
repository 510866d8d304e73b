"""Counts for ``/metrics``: jobs by status, running jobs' last heartbeats, pilots, queues."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from coordinator.store.schema import jobs, pilots, task_queues
from protocol import JobStatus


def jobs_by_status(conn: Connection) -> dict[tuple[str, str], int]:
    """``(vo, status) -> number of jobs``."""
    query = select(jobs.c.vo, jobs.c.status, func.count()).group_by(jobs.c.vo, jobs.c.status)
    return {(str(vo), str(status)): int(count) for vo, status, count in conn.execute(query)}


def last_signs_of_life(conn: Connection) -> list[str]:
    """For each Running job, when it last heartbeated (or started, if it never did)."""
    query = select(func.coalesce(jobs.c.heartbeat_at, jobs.c.updated_at)).where(
        jobs.c.status == JobStatus.RUNNING.value
    )
    return [str(at) for at in conn.scalars(query)]


def pilots_by_vo(conn: Connection) -> dict[str, int]:
    query = select(pilots.c.vo, func.count()).group_by(pilots.c.vo)
    return {str(vo): int(count) for vo, count in conn.execute(query)}


def task_queues_by_vo(conn: Connection) -> dict[str, int]:
    query = select(task_queues.c.vo, func.count()).group_by(task_queues.c.vo)
    return {str(vo): int(count) for vo, count in conn.execute(query)}
