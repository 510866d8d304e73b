"""Queries on task queues and owners' fair-share usage. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Executable,
    Integer,
    RowMapping,
    Select,
    bindparam,
    delete,
    func,
    select,
    text,
    union_all,
    update,
)

from coordinator.store.dialects import dialect_insert, insert_missing
from coordinator.store.events import STATUS
from coordinator.store.jobs import IN, add_history
from coordinator.store.precompiled import PerDialect, Precompiled, Row, per_count
from coordinator.store.schema import jobs, owner_usage, task_queues, utc_timestamp
from protocol import JobStatus

QUEUE_COLUMNS = tuple(
    column.name
    for column in task_queues.columns
    if column.name not in ("task_queue_id", "queue_key", "created_at")
)
"""The requirement columns a queue shares with its jobs' rows."""


QUEUE_ATTEMPTS = 3


def queue_ids(conn: Connection, keys: Mapping[str, Mapping[Any, Any]]) -> dict[str, int]:
    """The queue id of each ``queue_key -> requirement columns``, creating missing queues.

    The queues found stay share-locked until the caller's transaction ends (PostgreSQL's
    ``FOR KEY SHARE``), so ``delete_queue_if_idle`` cannot remove one that the caller is
    attaching jobs to and has not committed yet. A queue created by someone else in the
    meantime is taken as it is (``ON CONFLICT DO NOTHING``); one removed in the meantime is
    created again."""
    found: dict[str, int] = {}
    missing = list(keys)
    for _attempt in range(QUEUE_ATTEMPTS):
        if not missing:
            return found
        found.update(_existing(conn, missing))
        missing = [key for key in missing if key not in found]
        if missing:
            now = utc_timestamp()
            rows = [
                {"queue_key": key, "created_at": now, **{c: keys[key][c] for c in QUEUE_COLUMNS}}
                for key in missing
            ]
            insert_missing(conn, task_queues, rows, ["queue_key"])
    if missing:
        raise RuntimeError(f"task queues {missing} vanished {QUEUE_ATTEMPTS} times in a row")
    return found


def _existing(conn: Connection, keys: Sequence[str]) -> dict[str, int]:
    query = (
        select(task_queues.c.queue_key, task_queues.c.task_queue_id)
        .where(task_queues.c.queue_key.in_(list(keys)))
        .with_for_update(read=True, key_share=True)
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
    source: str = "",
) -> list[Row]:
    """Claim up to ``limit`` Waiting jobs of these queues for ``pilot_id``, in match order
    (highest priority, then oldest): Waiting -> Matched in one statement, an ``UPDATE ...
    RETURNING`` whose condition on the status makes it the claim: a job already taken by
    another transaction is not changed, and not returned. On SQLite write transactions are
    serialised. On PostgreSQL claims run side by side, in this process and in every other
    coordinator on the database: there the inner select locks the jobs it picks and skips
    those another claim holds (``FOR UPDATE SKIP LOCKED``, ``_PG_CLAIM``), so concurrent
    claims take different jobs instead of queueing on the same rows and finding them gone.

    ``source``: also write each claimed job's history entry and status event (Matched,
    "Assigned", from ``source``), and return its input sandboxes (``INPUTS``, digests in
    order): on PostgreSQL in the claim's own statement (``_PG_CLAIM_RECORDED``: three
    statements and a round trip fewer per match), elsewhere the history after it (the
    caller reads the inputs). Without ``source`` the caller writes the history. Rows come
    back in match order."""
    if not task_queue_ids or limit < 1:
        return []
    params: dict[str, Any] = {}
    if conn.dialect.name == "postgresql":
        claim = _PG_CLAIM_RECORDED if source else _PG_CLAIM
        params["p_tqs"] = [int(tq_id) for tq_id in task_queue_ids]
        if source:
            params.update(p_source=source, p_status_kind=STATUS, p_in=IN)
    else:
        claim = _claim_statement(len(task_queue_ids))
        params.update({f"p_tq{i}": tq_id for i, tq_id in enumerate(task_queue_ids)})
    params.update(
        p_limit=limit,
        p_waiting=JobStatus.WAITING.value,
        p_matched=JobStatus.MATCHED.value,
        p_minor="Assigned",
        p_pilot=pilot_id,
        p_site=site,
        p_now=now,
    )
    rows = claim.rows(conn, **params)
    rows.sort(key=lambda row: (-int(row["priority"]), int(row["job_id"])))
    if source and claim is not _PG_CLAIM_RECORDED:
        add_history(conn, [_matched(row, source, now) for row in rows])
    return list(rows)


def _matched(row: Row, source: str, now: str) -> dict[str, Any]:
    """The history entry of a claimed job."""
    return {
        "job_id": row["job_id"],
        "status": JobStatus.MATCHED.value,
        "minor_status": "Assigned",
        "application_status": row["application_status"],
        "source": source,
        "at": now,
    }


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


# PostgreSQL locks no row of a UNION, and a lock taken outside a queue's LIMIT would come
# after it (a queue whose first jobs other claims hold would read as empty). So each queue's
# look-up is a LATERAL sub-select that locks its own rows, skipping locked ones before its
# LIMIT: one index scan per queue (an OR of IN-subqueries scanned the whole jobs table: 39 ms
# against 1 ms for 25 queues over 20,000 jobs). The queues come as one array parameter, so
# one statement serves any number of them. Jobs locked by a queue's look-up beyond the
# outer LIMIT stay locked until the claim commits (others skip them meanwhile): at most
# ``limit`` per queue, for the milliseconds of one match.
_PG_CLAIM = Precompiled(
    text(
        f"""
        UPDATE jobs SET status = :p_matched, minor_status = :p_minor, pilot_id = :p_pilot,
            site = :p_site, updated_at = :p_now
        WHERE jobs.job_id IN (
            SELECT h.job_id FROM unnest(CAST(:p_tqs AS integer[])) AS q(tq)
            CROSS JOIN LATERAL (
                SELECT jobs.job_id, jobs.priority FROM jobs
                WHERE jobs.task_queue_id = q.tq AND jobs.status = :p_waiting
                ORDER BY jobs.priority DESC, jobs.job_id
                LIMIT :p_limit
                FOR UPDATE SKIP LOCKED
            ) AS h
            ORDER BY h.priority DESC, h.job_id
            LIMIT :p_limit
        )
        AND jobs.status = :p_waiting
        RETURNING {", ".join(f"jobs.{name}" for name in CLAIMED_COLUMNS)}
        """
    )
)


INPUTS = "input_sandboxes"
"""The column of a recorded PostgreSQL claim's rows with the job's input sandboxes."""

# The claim above, and in the same statement (data-modifying CTEs, which see the claimed
# rows through RETURNING) each claimed job's history entry and status event, as
# ``jobs.add_history`` writes them, and its input sandboxes, which the reply needs.
_PG_CLAIM_RECORDED = Precompiled(
    text(
        f"""
        WITH claimed AS ({str(_PG_CLAIM.statement).strip()}),
        history AS (
            INSERT INTO job_history (job_id, status, minor_status, application_status,
                                     source, at)
            SELECT job_id, :p_matched, :p_minor, application_status, :p_source, :p_now
            FROM claimed
        ),
        events AS (
            INSERT INTO job_events (job_id, kind, status, minor_status, application_status,
                                    stream, "offset", size_bytes, at)
            SELECT job_id, :p_status_kind, :p_matched, :p_minor, application_status, '', 0,
                   0, :p_now
            FROM claimed
        )
        SELECT claimed.*, ARRAY(
            SELECT s.sha256 FROM job_sandboxes AS s
            WHERE s.job_id = claimed.job_id AND s.kind = :p_in ORDER BY s.position
        ) AS {INPUTS}
        FROM claimed
        """
    )
)


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


def lock_queue(conn: Connection, task_queue_id: int) -> bool:
    """Lock the queue's row for deletion; False if it is gone, or in use by a transaction
    attaching jobs to it (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; on SQLite the write
    transaction holds the database, and this only says whether the queue exists)."""
    query = (
        select(task_queues.c.task_queue_id)
        .where(task_queues.c.task_queue_id == task_queue_id)
        .with_for_update(skip_locked=True)
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
_SAVE_USAGE = PerDialect(
    lambda dialect: (
        dialect_insert(dialect, owner_usage)
        .values(
            vo=bindparam("p_vo"),
            owner=bindparam("p_owner"),
            usage=bindparam("p_usage"),
            updated_at_s=bindparam("p_at"),
        )
        .on_conflict_do_update(
            index_elements=["vo", "owner"],
            set_={"usage": bindparam("p_usage"), "updated_at_s": bindparam("p_at")},
        )
    )
)


def usage_of_vo(conn: Connection, vo: str) -> dict[str, tuple[float, float]]:
    """``owner -> (usage, updated_at_s)`` of every owner of ``vo`` with recorded usage."""
    return usage_of_vo_later(conn, vo)()


def usage_of_vo_later(conn: Connection, vo: str) -> Callable[[], dict[str, tuple[float, float]]]:
    """``usage_of_vo``, read when called (``Precompiled.rows_later``)."""
    read = _USAGE.rows_later(conn, p_vo=vo)
    return lambda: {
        str(row["owner"]): (float(row["usage"]), float(row["updated_at_s"])) for row in read()
    }


def save_usage(conn: Connection, vo: str, usage: Mapping[str, float], at_s: float) -> None:
    """Store the owners' usage as of ``at_s`` (seconds since the epoch), in one upsert.

    Matches on several coordinators may each add to the usage they read: the last write
    wins, so usage can be undercounted by what concurrent matches gave. Fair share is a
    decaying estimate and corrects itself at the next match; no lock is worth that."""
    rows = [
        {"p_vo": vo, "p_owner": owner, "p_usage": used, "p_at": at_s}
        for owner, used in sorted(usage.items())  # in key order, as every writer locks rows
    ]
    _SAVE_USAGE.on(conn).run_many(conn, rows)


def _has_waiting() -> Any:
    """EXISTS a Waiting job of the task queue in the outer query: one index seek."""
    return (
        select(jobs.c.job_id)
        .where(
            jobs.c.task_queue_id == task_queues.c.task_queue_id,
            jobs.c.status == JobStatus.WAITING.value,
        )
        .exists()
    )


def queues_with_waiting(conn: Connection, vo: str) -> list[RowMapping]:
    """The VO's task queues with at least one Waiting job: one index seek per queue."""
    query = (
        select(task_queues)
        .where(task_queues.c.vo == vo, _has_waiting())
        .order_by(task_queues.c.task_queue_id)
    )
    return list(conn.execute(query).mappings())


def waiting_among(conn: Connection, task_queue_ids: Iterable[int]) -> set[int]:
    """Those of ``task_queue_ids`` with at least one Waiting job: one index seek each."""
    query = select(task_queues.c.task_queue_id).where(
        task_queues.c.task_queue_id.in_(list(task_queue_ids)), _has_waiting()
    )
    return {int(tq_id) for tq_id in conn.execute(query).scalars()}


QUEUE_COUNT_LIMIT = 1000
"""``queue_place`` counts up to this many: an explanation costs the same in a queue of a
million jobs (a job that far back learns it is past the first thousand)."""


def queue_place(
    conn: Connection, task_queue_id: int, priority: int, job_id: int
) -> tuple[int, int]:
    """(Waiting jobs before this one in match order, Waiting jobs in its queue), each
    counted up to ``QUEUE_COUNT_LIMIT``, in one statement over ranges of the queue's index
    that stop there (``ix_jobs_task_queue``: higher priorities, then the same priority and
    an older id)."""
    in_queue = (jobs.c.task_queue_id == task_queue_id, jobs.c.status == JobStatus.WAITING.value)
    higher = (jobs.c.priority > priority,)
    older = (jobs.c.priority == priority, jobs.c.job_id < job_id)

    def counted(*where: Any) -> Any:
        first = select(jobs.c.job_id).where(*in_queue, *where).limit(QUEUE_COUNT_LIMIT)
        return select(func.count()).select_from(first.subquery()).scalar_subquery()

    row = conn.execute(select(counted(*higher), counted(*older), counted())).one()
    return min(QUEUE_COUNT_LIMIT, int(row[0]) + int(row[1])), int(row[2])
