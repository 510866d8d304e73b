"""Queries on task queues and owners' fair-share usage. Callers own the transaction."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Executable,
    Integer,
    Select,
    bindparam,
    delete,
    insert,
    select,
    union_all,
    update,
)

from coordinator.store.precompiled import Row
from coordinator.store.schema import jobs, owner_usage, task_queues, utc_timestamp
from protocol import JobStatus

QUEUE_COLUMNS = tuple(
    column.name
    for column in task_queues.columns
    if column.name not in ("task_queue_id", "queue_key", "created_at")
)
"""The requirement columns a queue shares with its jobs' rows."""


def queue_ids(conn: Connection, keys: Mapping[str, Mapping[Any, Any]]) -> dict[str, int]:
    """The queue id of each ``queue_key -> requirement columns``, creating missing queues."""
    if not keys:
        return {}
    found = _existing(conn, list(keys))
    missing = [key for key in keys if key not in found]
    if missing:
        now = utc_timestamp()
        rows = [
            {"queue_key": key, "created_at": now, **{c: keys[key][c] for c in QUEUE_COLUMNS}}
            for key in missing
        ]
        conn.execute(insert(task_queues), rows)
        found.update(_existing(conn, missing))
    return found


def _existing(conn: Connection, keys: Sequence[str]) -> dict[str, int]:
    query = select(task_queues.c.queue_key, task_queues.c.task_queue_id).where(
        task_queues.c.queue_key.in_(list(keys))
    )
    return {str(row.queue_key): int(row.task_queue_id) for row in conn.execute(query)}


def queues_of_vo(conn: Connection, vo: str) -> list[Row]:
    query = select(task_queues).where(task_queues.c.vo == vo).order_by(task_queues.c.task_queue_id)
    return list(conn.execute(query).mappings())


def next_waiting(conn: Connection, task_queue_id: int, limit: int) -> list[Row]:
    """The queue's Waiting jobs in match order: highest priority first, then oldest."""
    query = (
        select(jobs)
        .where(jobs.c.task_queue_id == task_queue_id, jobs.c.status == JobStatus.WAITING.value)
        .order_by(jobs.c.priority.desc(), jobs.c.job_id)
        .limit(limit)
    )
    return list(conn.execute(query).mappings())


def next_waiting_of(
    conn: Connection, task_queue_ids: Sequence[int], limit: int
) -> dict[int, list[Row]]:
    """``next_waiting`` of several queues in one statement: a UNION ALL of one indexed
    look-up per queue, so its cost does not grow with the number of waiting jobs."""
    params: dict[str, int] = {f"tq{i}": tq_id for i, tq_id in enumerate(task_queue_ids)}
    params["limit"] = limit
    found: dict[int, list[Row]] = {tq_id: [] for tq_id in task_queue_ids}
    for row in conn.execute(_heads_statement(len(task_queue_ids)), params).mappings():
        found[int(row["task_queue_id"])].append(row)
    return found


@functools.lru_cache(maxsize=128)
def _heads_statement(count: int) -> Executable:
    # Built once per number of queues: building a UNION of subqueries over the jobs
    # table's columns costs more than running it.
    def head(i: int) -> Select[Any]:
        return (
            select(jobs)
            .where(
                jobs.c.task_queue_id == bindparam(f"tq{i}"),
                jobs.c.status == JobStatus.WAITING.value,
            )
            .order_by(jobs.c.priority.desc(), jobs.c.job_id)
            .limit(bindparam("limit", type_=Integer))
        )

    if count == 1:
        return head(0)
    return union_all(*(select(head(i).subquery()) for i in range(count)))


def has_jobs_in(conn: Connection, task_queue_id: int, statuses: Iterable[JobStatus]) -> bool:
    query = (
        select(jobs.c.job_id)
        .where(
            jobs.c.task_queue_id == task_queue_id,
            jobs.c.status.in_([status.value for status in statuses]),
        )
        .limit(1)
    )
    return conn.execute(query).first() is not None


def delete_queue(conn: Connection, task_queue_id: int) -> None:
    conn.execute(delete(task_queues).where(task_queues.c.task_queue_id == task_queue_id))


def set_job_queues(conn: Connection, changes: Sequence[Mapping[str, int]]) -> None:
    """Set ``task_queue_id`` of each ``{"id": job_id, "tq": task_queue_id}``."""
    if changes:
        statement = (
            update(jobs)
            .where(jobs.c.job_id == bindparam("id"))
            .values(task_queue_id=bindparam("tq"))
        )
        conn.execute(statement, list(changes))


def usage_of_vo(conn: Connection, vo: str) -> dict[str, tuple[float, float]]:
    """``owner -> (usage, updated_at_s)`` of every owner of ``vo`` with recorded usage."""
    query = select(owner_usage.c.owner, owner_usage.c.usage, owner_usage.c.updated_at_s).where(
        owner_usage.c.vo == vo
    )
    return {
        str(row.owner): (float(row.usage), float(row.updated_at_s)) for row in conn.execute(query)
    }


def save_usage(
    conn: Connection,
    vo: str,
    usage: Mapping[str, float],
    at_s: float,
    *,
    recorded: Iterable[str] | None = None,
) -> None:
    """Store the owners' usage as of ``at_s`` (seconds since the epoch). ``recorded``: the
    owners of ``vo`` that have a usage row, if the caller read them in this transaction."""
    if not usage:
        return
    known = set(usage_of_vo(conn, vo) if recorded is None else recorded)
    new = [
        {"vo": vo, "owner": o, "usage": u, "updated_at_s": at_s}
        for o, u in usage.items()
        if o not in known
    ]
    old = [{"o": o, "u": u, "at": at_s} for o, u in usage.items() if o in known]
    if new:
        conn.execute(insert(owner_usage), new)
    if old:
        statement = (
            update(owner_usage)
            .where(owner_usage.c.vo == vo, owner_usage.c.owner == bindparam("o"))
            .values(usage=bindparam("u"), updated_at_s=bindparam("at"))
        )
        conn.execute(statement, old)
