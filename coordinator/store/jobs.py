"""Queries on jobs, their history and their sandbox links. Callers own the transaction."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)

from coordinator.store.dialects import next_ids
from coordinator.store.events import add_status_events
from coordinator.store.pilots import touch_pilot
from coordinator.store.precompiled import Precompiled, Row, per_count
from coordinator.store.schema import job_history, job_sandboxes, jobs, utc_timestamp
from protocol import JobStatus

IN = "in"
OUT = "out"
SUMMARY_COLUMNS = [column for column in jobs.c if column.name != "description"]
"""Every column but the description, which lists leave out (it may be large)."""
HISTORY_COLUMNS = ("job_id", "status", "minor_status", "application_status", "source", "at")

_JOB = Precompiled(select(jobs).where(jobs.c.job_id == bindparam("p_job")))
_JOB_LOCKED = Precompiled(select(jobs).where(jobs.c.job_id == bindparam("p_job")).with_for_update())


def _jobs_by_id(count: int) -> Select[Any]:
    return (
        select(*SUMMARY_COLUMNS)
        .where(jobs.c.job_id.in_([bindparam(f"p_{i}") for i in range(count)]))
        .order_by(jobs.c.job_id)
    )


_JOBS = per_count(_jobs_by_id)
_JOBS_LOCKED = per_count(lambda count: _jobs_by_id(count).with_for_update())
_HISTORY = Precompiled(
    insert(job_history).values({name: bindparam(f"p_{name}") for name in HISTORY_COLUMNS})
)
_SANDBOXES = Precompiled(
    select(job_sandboxes.c.sha256)
    .where(
        job_sandboxes.c.job_id == bindparam("p_job"), job_sandboxes.c.kind == bindparam("p_kind")
    )
    .order_by(job_sandboxes.c.position)
)
_HEARTBEATS = Precompiled(
    update(jobs)
    .where(jobs.c.job_id == bindparam("p_job"))
    .values(heartbeat_at=bindparam("p_at"), accounting=bindparam("p_accounting"))
)
# PostgreSQL: a batch of heartbeats as one statement over arrays, not one execution per
# job (each costs the server a parse-free but whole executor start, and psycopg a send and
# a poll in its pipeline), with the pilot's touch (``pilots.touch_pilot``) in it, a
# data-modifying CTE. The rows are locked already, in job id order (``get_jobs``).
_PG_HEARTBEATS = Precompiled(
    text(
        """
        WITH touched AS (
            UPDATE pilots SET last_seen = :p_now WHERE pilots.pilot_id = :p_pilot
        )
        UPDATE jobs SET heartbeat_at = v.at, accounting = v.accounting
        FROM unnest(CAST(:p_jobs AS bigint[]), CAST(:p_ats AS varchar[]),
                    CAST(:p_accountings AS text[])) AS v(job_id, at, accounting)
        WHERE jobs.job_id = v.job_id
        """
    )
)


def insert_jobs(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert many jobs in one statement batch; return their ids in the order given."""
    if not rows:
        return []
    now = utc_timestamp()
    values = [{**row, "created_at": now, "updated_at": now} for row in rows]
    if conn.dialect.name == "postgresql":
        job_ids = next_ids(conn, "jobs_job_id_seq", len(values))
        conn.execute(insert(jobs), [{**v, "job_id": i} for v, i in zip(values, job_ids)])
        return job_ids
    statement = insert(jobs).returning(jobs.c.job_id, sort_by_parameter_order=True)
    return [int(row.job_id) for row in conn.execute(statement, values)]


def rewrite_descriptions(conn: Connection, changes: Sequence[Mapping[str, Any]]) -> None:
    """Set ``description``, ``job_name`` and ``job_group`` of each ``{"id": ...}`` given."""
    if not changes:
        return
    statement = (
        update(jobs)
        .where(jobs.c.job_id == bindparam("id"))
        .values(
            description=bindparam("description"),
            job_name=bindparam("job_name"),
            job_group=bindparam("job_group"),
        )
    )
    conn.execute(statement, list(changes))


def add_history(conn: Connection, entries: Sequence[Mapping[str, Any]]) -> None:
    """Append history rows; each needs job_id, status, minor_status, application_status,
    source and optionally ``at``."""
    if not entries:
        return
    now = utc_timestamp()
    rows = [{"at": now, **entry} for entry in entries]
    _HISTORY.run_many(conn, [{f"p_{name}": row[name] for name in HISTORY_COLUMNS} for row in rows])
    add_status_events(conn, rows)  # the live stream's copy (coordinator/logic/events.py)


def link_sandboxes(
    conn: Connection, job_ids: Iterable[int], kind: str, digests: Sequence[str]
) -> None:
    rows = [
        {"job_id": job_id, "kind": kind, "sha256": digest, "position": position}
        for job_id in job_ids
        for position, digest in enumerate(digests)
    ]
    if rows:
        conn.execute(insert(job_sandboxes), rows)


def sandboxes_of(conn: Connection, job_id: int, kind: str) -> list[str]:
    return [str(row["sha256"]) for row in _SANDBOXES.rows(conn, p_job=job_id, p_kind=kind)]


_SANDBOXES_OF_JOBS = per_count(
    lambda count: (
        select(job_sandboxes.c.job_id, job_sandboxes.c.sha256)
        .where(
            job_sandboxes.c.job_id.in_([bindparam(f"p_{i}") for i in range(count)]),
            job_sandboxes.c.kind == bindparam("p_kind"),
        )
        .order_by(job_sandboxes.c.job_id, job_sandboxes.c.position)
    )
)


def sandboxes_of_jobs(conn: Connection, job_ids: Sequence[int], kind: str) -> dict[int, list[str]]:
    """``sandboxes_of`` several jobs in one statement: job id -> digests in order."""
    found: dict[int, list[str]] = {int(job_id): [] for job_id in job_ids}
    if job_ids:
        params = {f"p_{i}": job_id for i, job_id in enumerate(job_ids)}
        for row in _SANDBOXES_OF_JOBS(len(job_ids)).rows(conn, p_kind=kind, **params):
            found[int(row["job_id"])].append(str(row["sha256"]))
    return found


def get_job(conn: Connection, job_id: int, *, lock: bool = False) -> Row | None:
    """The job's row; ``lock``: locked until the transaction ends (PostgreSQL's ``FOR
    UPDATE``; SQLite's write transactions hold the whole database already), for a write
    that decides from what it read."""
    return (_JOB_LOCKED if lock else _JOB).first(conn, p_job=job_id)


def get_jobs(conn: Connection, job_ids: Sequence[int], *, lock: bool = False) -> list[Row]:
    """The jobs with these ids, without their descriptions (``SUMMARY_COLUMNS``); ``lock``
    as in ``get_job`` (in job id order, so that two writers never wait on each other)."""
    return get_jobs_later(conn, job_ids, lock=lock)()


def get_jobs_later(
    conn: Connection, job_ids: Sequence[int], *, lock: bool = False
) -> Callable[[], list[Row]]:
    """``get_jobs``, read when called (``Precompiled.rows_later``)."""
    if not job_ids:
        return list
    params = {f"p_{i}": job_id for i, job_id in enumerate(job_ids)}
    read = (_JOBS_LOCKED if lock else _JOBS)(len(job_ids)).rows_later(conn, **params)
    return lambda: list(read())


def list_jobs(
    conn: Connection,
    *,
    owner: str | None,
    vo: str | None,
    statuses: Sequence[JobStatus] = (),
    exclude: Sequence[JobStatus] = (JobStatus.DELETED,),
    limit: int = 1000,
    site: str | None = None,
    job_group: str | None = None,
    before_id: int | None = None,
) -> list[Row]:
    """Jobs newest first (ids below ``before_id`` when given), optionally of one
    owner/VO/site/group and in some statuses, without their descriptions."""
    query = select(*SUMMARY_COLUMNS).order_by(jobs.c.job_id.desc()).limit(limit)
    query = query.where(*_filters(owner, vo, site, job_group))
    if before_id is not None:
        query = query.where(jobs.c.job_id < before_id)
    if statuses:
        query = query.where(jobs.c.status.in_([s.value for s in statuses]))
    if exclude:
        query = query.where(jobs.c.status.not_in([s.value for s in exclude]))
    return list(conn.execute(query).mappings())


def count_by_status(
    conn: Connection,
    *,
    owner: str | None,
    vo: str | None,
    site: str | None = None,
    job_group: str | None = None,
) -> dict[str, int]:
    """How many jobs are in each status, with the same filters as ``list_jobs``."""
    query = (
        select(jobs.c.status, func.count())
        .where(*_filters(owner, vo, site, job_group))
        .group_by(jobs.c.status)
    )
    return {str(status): int(count) for status, count in conn.execute(query)}


def _filters(
    owner: str | None, vo: str | None, site: str | None, job_group: str | None
) -> list[Any]:
    wanted = {jobs.c.owner: owner, jobs.c.vo: vo, jobs.c.site: site, jobs.c.job_group: job_group}
    return [column == value for column, value in wanted.items() if value is not None]


def history_of(
    conn: Connection, job_id: int, *, after_id: int | None = None, limit: int | None = None
) -> list[Row]:
    """A job's history entries oldest first (those after entry ``after_id`` when given)."""
    query = (
        select(job_history)
        .where(job_history.c.job_id == job_id)
        .order_by(job_history.c.entry_id)
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(job_history.c.entry_id > after_id)
    return list(conn.execute(query).mappings())


def change_status(
    conn: Connection,
    job_id: int,
    *,
    expected: JobStatus,
    status: JobStatus,
    minor_status: str,
    application_status: str,
    source: str,
    **columns: Any,
) -> bool:
    """Move a job from ``expected`` to ``status`` and log it; False if it was not in
    ``expected`` any more (someone else changed it first)."""
    now = utc_timestamp()
    params = {f"p_{name}": value for name, value in columns.items()}
    changed = _status_change(tuple(sorted(columns))).run(
        conn,
        p_job=job_id,
        p_expected=expected.value,
        p_status=status.value,
        p_minor_status=minor_status,
        p_application_status=application_status,
        p_updated_at=now,
        **params,
    )
    if changed != 1:
        return False
    entry = {"job_id": job_id, "status": status.value, "source": source, "at": now}
    entry.update(minor_status=minor_status, application_status=application_status)
    add_history(conn, [entry])
    return True


@functools.lru_cache(maxsize=64)
def _status_change(columns: tuple[str, ...]) -> Precompiled:
    """``change_status``'s UPDATE, also setting ``columns``; one per set of columns."""
    values = ("status", "minor_status", "application_status", "updated_at", *columns)
    return Precompiled(
        update(jobs)
        .where(jobs.c.job_id == bindparam("p_job"), jobs.c.status == bindparam("p_expected"))
        .values({name: bindparam(f"p_{name}") for name in values})
    )


def update_columns(conn: Connection, job_id: int, **columns: Any) -> None:
    conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(**columns))


def record_heartbeats(
    conn: Connection, changes: Sequence[Mapping[str, Any]], pilot_id: str | None = None
) -> None:
    """Set ``heartbeat_at`` and ``accounting`` of each ``{"id": ...}`` given, in one batch;
    ``pilot_id``: and touch that pilot (``pilots.touch_pilot``, in the same statement on
    PostgreSQL)."""
    # In job id order, as every writer locks jobs: two never wait on each other.
    rows = [
        {"p_job": c["id"], "p_at": c["heartbeat_at"], "p_accounting": c["accounting"]}
        for c in sorted(changes, key=lambda change: int(change["id"]))
    ]
    if conn.dialect.name == "postgresql" and (pilot_id is not None or len(rows) > 1):
        _PG_HEARTBEATS.send(
            conn,
            p_jobs=[row["p_job"] for row in rows],
            p_ats=[row["p_at"] for row in rows],
            p_accountings=[row["p_accounting"] for row in rows],
            p_pilot=pilot_id or "",
            p_now=utc_timestamp(),
        )
        return
    _HEARTBEATS.run_many(conn, rows)
    if pilot_id is not None:
        touch_pilot(conn, pilot_id)
