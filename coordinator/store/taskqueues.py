"""Queries on task queues and owners' fair-share usage. Callers own the transaction."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Executable,
    Integer,
    Select,
    bindparam,
    delete,
    func,
    insert,
    select,
    union_all,
    update,
)

from coordinator.store.precompiled import Precompiled, Row, per_count
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


_QUEUES_OF_VO = Precompiled(
    select(task_queues)
    .where(task_queues.c.vo == bindparam("p_vo"))
    .order_by(task_queues.c.task_queue_id)
)


def queues_of_vo(conn: Connection, vo: str) -> list[Row]:
    return list(_QUEUES_OF_VO.rows(conn, p_vo=vo))


CLAIMED_COLUMNS = (
    "job_id",
    "task_queue_id",
    "owner",
    "vo",
    "priority",
    "description",
    "application_status",
    "max_ram_mb",
    "wall_time_s",
    "cpu_time_s",
    "container",
)
"""What a claim returns of each job: enough to hand it to the pilot."""


def claim_waiting(
    conn: Connection,
    task_queue_ids: Sequence[int],
    limit: int,
    *,
    pilot_id: str,
    site: str,
    now: str,
) -> list[Row]:
    """Claim up to ``limit`` Waiting jobs of these queues for ``pilot_id``, in match order
    (highest priority, then oldest): Waiting -> Matched in one statement, an ``UPDATE ...
    RETURNING`` whose condition on the status makes it the claim: a job already taken by
    another transaction is not changed, and not returned. On SQLite write transactions are
    serialised; a dialect with concurrent writers needs its own variant here (row locks
    skipped, e.g. PostgreSQL's ``FOR UPDATE SKIP LOCKED`` in the inner select).

    The caller writes the history (``HISTORY_MATCHED``). Rows come back in match order."""
    if not task_queue_ids or limit < 1:
        return []
    params: dict[str, Any] = {f"p_tq{i}": tq_id for i, tq_id in enumerate(task_queue_ids)}
    params.update(
        p_limit=limit,
        p_waiting=JobStatus.WAITING.value,
        p_matched=JobStatus.MATCHED.value,
        p_minor="Assigned",
        p_pilot=pilot_id,
        p_site=site,
        p_now=now,
    )
    rows = _claim_statement(len(task_queue_ids)).rows(conn, **params)
    rows.sort(key=lambda row: (-int(row["priority"]), int(row["job_id"])))
    return list(rows)


def _waiting_heads(count: int) -> Executable:
    """The first ``p_limit`` Waiting jobs in match order over ``count`` queues: one index
    seek per queue (a UNION ALL), then the best of those: O(queues x limit), not O(jobs)."""

    def head(i: int) -> Select[Any]:
        return (
            select(jobs.c.job_id, jobs.c.priority)
            .where(
                jobs.c.task_queue_id == bindparam(f"p_tq{i}"),
                jobs.c.status == bindparam("p_waiting"),
            )
            .order_by(jobs.c.priority.desc(), jobs.c.job_id)
            .limit(bindparam("p_limit", type_=Integer))
        )

    if count == 1:
        return select(head(0).subquery().c.job_id)
    heads = union_all(*(select(head(i).subquery()) for i in range(count))).subquery()
    return (
        select(heads.c.job_id)
        .order_by(heads.c.priority.desc(), heads.c.job_id)
        .limit(bindparam("p_limit", type_=Integer))
    )


_claim_statement = per_count(
    lambda count: (
        update(jobs)
        .where(
            jobs.c.job_id.in_(cast(Select[Any], _waiting_heads(count))),
            # Checked again on the row (for databases with concurrent writers), through an
            # expression rather than the bare column: SQLite's planner would otherwise walk
            # the status index, every Waiting job, instead of looking the few ids up.
            func.coalesce(jobs.c.status, "") == bindparam("p_waiting"),
        )
        .values(
            status=bindparam("p_matched"),
            minor_status=bindparam("p_minor"),
            pilot_id=bindparam("p_pilot"),
            site=bindparam("p_site"),
            updated_at=bindparam("p_now"),
        )
        .returning(*(jobs.c[name] for name in CLAIMED_COLUMNS))
    )
)


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


_USAGE = Precompiled(
    select(owner_usage.c.owner, owner_usage.c.usage, owner_usage.c.updated_at_s).where(
        owner_usage.c.vo == bindparam("p_vo")
    )
)
_NEW_USAGE = Precompiled(
    insert(owner_usage).values(
        vo=bindparam("p_vo"),
        owner=bindparam("p_owner"),
        usage=bindparam("p_usage"),
        updated_at_s=bindparam("p_at"),
    )
)
_SET_USAGE = Precompiled(
    update(owner_usage)
    .where(owner_usage.c.vo == bindparam("p_vo"), owner_usage.c.owner == bindparam("p_owner"))
    .values(usage=bindparam("p_usage"), updated_at_s=bindparam("p_at"))
)


def usage_of_vo(conn: Connection, vo: str) -> dict[str, tuple[float, float]]:
    """``owner -> (usage, updated_at_s)`` of every owner of ``vo`` with recorded usage."""
    return {
        str(row["owner"]): (float(row["usage"]), float(row["updated_at_s"]))
        for row in _USAGE.rows(conn, p_vo=vo)
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
    rows = [{"p_vo": vo, "p_owner": o, "p_usage": u, "p_at": at_s} for o, u in usage.items()]
    _NEW_USAGE.run_many(conn, [row for row in rows if row["p_owner"] not in known])
    _SET_USAGE.run_many(conn, [row for row in rows if row["p_owner"] in known])
