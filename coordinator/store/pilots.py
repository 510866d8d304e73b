"""Queries on registered pilots."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, bindparam, func, insert, or_, select, update

from coordinator.store.dialects import insert_missing
from coordinator.store.precompiled import Precompiled, Row
from coordinator.store.schema import jobs, pilot_jobs, pilots, utc_timestamp

_PILOT = Precompiled(select(pilots).where(pilots.c.pilot_id == bindparam("p_pilot")))
_PILOT_LOCKED = Precompiled(
    select(pilots).where(pilots.c.pilot_id == bindparam("p_pilot")).with_for_update()
)
_TOUCH = Precompiled(
    update(pilots)
    .where(pilots.c.pilot_id == bindparam("p_pilot"))
    .values(last_seen=bindparam("p_now"))
)
_TOUCH_MATCH = Precompiled(
    update(pilots)
    .where(pilots.c.pilot_id == bindparam("p_pilot"))
    .values(last_seen=bindparam("p_now"), last_match=bindparam("p_match"))
)


def insert_pilot(conn: Connection, row: Mapping[str, Any]) -> None:
    now = utc_timestamp()
    conn.execute(insert(pilots).values(registered_at=now, last_seen=now, **row))


def get_pilot(conn: Connection, pilot_id: str, *, lock: bool = False) -> Row | None:
    """The pilot's row; ``lock`` as in ``jobs.get_job``."""
    return (_PILOT_LOCKED if lock else _PILOT).first(conn, p_pilot=pilot_id)


def get_pilot_later(
    conn: Connection, pilot_id: str, *, lock: bool = False
) -> Callable[[], Row | None]:
    """``get_pilot``, read when called (``Precompiled.rows_later``)."""
    read = (_PILOT_LOCKED if lock else _PILOT).rows_later(conn, p_pilot=pilot_id)
    return lambda: next(iter(read()), None)


def touch_pilot(conn: Connection, pilot_id: str, last_match: str | None = None) -> None:
    """Record that the pilot was heard from just now (and, from a match request, what it
    asked and got: JSON, see ``coordinator.logic.explanations``)."""
    if last_match is None:
        _TOUCH.send(conn, p_pilot=pilot_id, p_now=utc_timestamp())
    else:
        _TOUCH_MATCH.send(conn, p_pilot=pilot_id, p_now=utc_timestamp(), p_match=last_match)


def set_pilot_state(
    conn: Connection,
    pilot_id: str,
    *,
    accepting_work: bool,
    refuse_reason: str,
    checks: str | None = None,
    stop_cause: str = "",
) -> None:
    """Record whether the pilot takes work and why not; ``checks`` (JSON) when given."""
    values: dict[str, Any] = {
        "accepting_work": accepting_work,
        "refuse_reason": refuse_reason,
        "stop_cause": stop_cause,
        "last_seen": utc_timestamp(),
    }
    if checks is not None:
        values["checks"] = checks
    conn.execute(update(pilots).where(pilots.c.pilot_id == pilot_id).values(**values))


def record_released_job(conn: Connection, pilot_id: str, job_id: int) -> None:
    """Remember that ``pilot_id`` held ``job_id`` before the job was taken from it."""
    row = {"pilot_id": pilot_id, "job_id": job_id, "released_at": utc_timestamp()}
    insert_missing(conn, pilot_jobs, [row], ["pilot_id", "job_id"])


def list_pilots(
    conn: Connection, *, vo: str | None, limit: int, after: tuple[str, str] | None = None
) -> list[Row]:
    """Pilots newest first, optionally of one VO; those after ``(registered_at, pilot_id)``
    in that order when ``after`` is given."""
    query = (
        select(pilots)
        .order_by(pilots.c.registered_at.desc(), pilots.c.pilot_id.desc())
        .limit(limit)
    )
    if vo is not None:
        query = query.where(pilots.c.vo == vo)
    if after is not None:
        at, pilot_id = after
        query = query.where(
            or_(
                pilots.c.registered_at < at,
                and_(pilots.c.registered_at == at, pilots.c.pilot_id < pilot_id),
            )
        )
    return list(conn.execute(query).mappings())


def jobs_of(conn: Connection, pilot_ids: Sequence[str]) -> dict[str, list[Row]]:
    """Each pilot's jobs, held now or released: rows with job_id, owner, vo and status."""
    wanted = list(pilot_ids)
    result: dict[str, list[Row]] = {pilot_id: [] for pilot_id in wanted}
    columns = (jobs.c.job_id, jobs.c.owner, jobs.c.vo, jobs.c.status)
    held = select(jobs.c.pilot_id, *columns).where(jobs.c.pilot_id.in_(wanted))
    released = (
        select(pilot_jobs.c.pilot_id, *columns)
        .join(jobs, jobs.c.job_id == pilot_jobs.c.job_id)
        .where(pilot_jobs.c.pilot_id.in_(wanted))
    )
    seen: set[tuple[str, int]] = set()
    for query in (held, released):
        for row in conn.execute(query).mappings():
            key = (str(row["pilot_id"]), int(row["job_id"]))
            if key not in seen:  # a job may come back to the pilot that lost it
                seen.add(key)
                result[key[0]].append(row)
    for rows in result.values():
        rows.sort(key=lambda row: int(row["job_id"]))
    return result


RECENT_COLUMNS = (
    pilots.c.pilot_id,
    pilots.c.vo,
    pilots.c.site,
    pilots.c.platform,
    pilots.c.tags,
    pilots.c.cores,
    pilots.c.memory_mb,
    pilots.c.time_left_s,
    pilots.c.registered_at,
    pilots.c.last_seen,
    pilots.c.accepting_work,
    pilots.c.gpus,
    pilots.c.cpu_score,
    pilots.c.last_match,
)
"""What an explanation reads of each recent pilot (not its facts and checks)."""


def recent_pilots(conn: Connection, vo: str, since: str, limit: int) -> list[RowMapping]:
    """The VO's pilots heard from at or after ``since``, the most recent first, at most
    ``limit`` (an index range: the pilots table is never scanned whole)."""
    query = (
        select(*RECENT_COLUMNS)
        .where(pilots.c.vo == vo, pilots.c.last_seen >= since)
        .order_by(pilots.c.last_seen.desc())
        .limit(limit)
    )
    return list(conn.execute(query).mappings())


def last_seen_in(conn: Connection, vo: str) -> str:
    """When a pilot of ``vo`` was last heard from ("" if never)."""
    query = select(func.max(pilots.c.last_seen)).where(pilots.c.vo == vo)
    return str(conn.execute(query).scalar() or "")
