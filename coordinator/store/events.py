"""The job event table: status changes and log appends in commit order. Callers own the
transaction; who may see which event is decided in ``coordinator.logic.events``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from sqlalchemy import Connection, RowMapping, bindparam, delete, func, insert, select

from coordinator.store.precompiled import Precompiled
from coordinator.store.schema import job_events, jobs

STATUS = "status"
LOG = "log"
_STATUS_COLUMNS = (
    "job_id",
    "kind",
    "status",
    "minor_status",
    "application_status",
    "stream",
    "offset",
    "size_bytes",
    "at",
)
_STATUS_EVENT = Precompiled(
    insert(job_events).values({name: bindparam(f"p_{name}") for name in _STATUS_COLUMNS})
)


def add_status_events(conn: Connection, entries: Sequence[Mapping[str, Any]]) -> None:
    """One event per job of a batch of history entries (``job_id``, ``status``,
    ``minor_status``, ``application_status``, ``at``): its last one. The steps a job goes
    through in one transaction (Received, Checking, Waiting at submission) are one change
    for a watcher, and a million-job submission writes a million events, not three."""
    if not entries:
        return
    last = {entry["job_id"]: entry for entry in entries}
    rows = [
        {
            "p_job_id": entry["job_id"],
            "p_kind": STATUS,
            "p_status": entry["status"],
            "p_minor_status": entry.get("minor_status", ""),
            "p_application_status": entry.get("application_status", ""),
            "p_stream": "",
            "p_offset": 0,
            "p_size_bytes": 0,
            "p_at": entry["at"],
        }
        for entry in last.values()
    ]
    _STATUS_EVENT.run_many(conn, rows)  # precompiled: every status change writes one


def add_log_event(
    conn: Connection, job_id: int, stream: str, offset: int, size_bytes: int, at: str
) -> None:
    conn.execute(
        insert(job_events).values(
            job_id=job_id,
            kind=LOG,
            stream=stream,
            offset=offset,
            size_bytes=size_bytes,
            at=at,
        )
    )


def last_event_id(conn: Connection) -> int:
    return int(conn.scalar(select(func.coalesce(func.max(job_events.c.event_id), 0))) or 0)


def first_event_id(conn: Connection) -> int:
    """The oldest event still kept (0 when there is none)."""
    return int(conn.scalar(select(func.coalesce(func.min(job_events.c.event_id), 0))) or 0)


def events_after(
    conn: Connection,
    after_id: int,
    *,
    owner: Optional[str],
    vo: Optional[str],
    job_id: Optional[int] = None,
    kinds: Sequence[str] = (STATUS, LOG),
    extra_ids: Sequence[int] = (),
    limit: int = 500,
) -> list[RowMapping]:
    """Events with an id above ``after_id`` (and those in ``extra_ids``) of the jobs of
    ``owner``/``vo`` (None: anyone's), oldest first, with the job's owner and VO."""
    wanted = job_events.c.event_id > after_id
    if extra_ids:
        wanted = wanted | job_events.c.event_id.in_(list(extra_ids))
    query = (
        select(job_events, jobs.c.owner, jobs.c.vo)
        .join(jobs, jobs.c.job_id == job_events.c.job_id)
        .where(wanted, job_events.c.kind.in_(list(kinds)))
        .order_by(job_events.c.event_id)
        .limit(limit)
    )
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    if vo is not None:
        query = query.where(jobs.c.vo == vo)
    if job_id is not None:
        query = query.where(job_events.c.job_id == job_id)
    return list(conn.execute(query).mappings())


def ids_after(conn: Connection, low: int, limit: int) -> list[int]:
    """The next ``limit`` stored event ids above ``low``, whoever may see them: tells a hole
    (an id not committed yet) from an event the caller may not see."""
    query = (
        select(job_events.c.event_id)
        .where(job_events.c.event_id > low)
        .order_by(job_events.c.event_id)
        .limit(limit)
    )
    return [int(value) for value in conn.scalars(query)]


def prune_before(conn: Connection, cutoff: str) -> int:
    """Forget events older than ``cutoff`` (an ISO time); return how many went."""
    return int(conn.execute(delete(job_events).where(job_events.c.at < cutoff)).rowcount or 0)
