"""Requests pilots already had applied, remembered by the id the pilot chose.

Read and written on the hot path (every match and report that carries an id), so both are
``Precompiled``: one indexed look-up and one insert in the request's own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Optional

from sqlalchemy import Connection, bindparam, delete, insert, select, text

from coordinator.store.pilots import touch_pilot
from coordinator.store.precompiled import Precompiled
from coordinator.store.schema import pilot_requests, utc_timestamp

MATCH = "match"
STATUS = "status"

_RECALL = Precompiled(
    select(pilot_requests.c.job_ids).where(
        pilot_requests.c.pilot_id == bindparam("p_pilot"),
        pilot_requests.c.request_id == bindparam("p_request"),
        pilot_requests.c.kind == bindparam("p_kind"),
    )
)
_COLUMNS = ("pilot_id", "request_id", "kind", "job_ids", "created_at")
_REMEMBER = Precompiled(
    insert(pilot_requests).values({name: bindparam(f"p_{name}") for name in _COLUMNS})
)


def recall(conn: Connection, pilot_id: str, request_id: str, kind: str) -> Optional[Any]:
    """What the first request with this id recorded (decoded JSON), or None if there was none."""
    return recall_later(conn, pilot_id, request_id, kind)()


def recall_later(
    conn: Connection, pilot_id: str, request_id: str, kind: str
) -> Callable[[], Optional[Any]]:
    """``recall``, read when called (``Precompiled.rows_later``)."""
    read = _RECALL.rows_later(conn, p_pilot=pilot_id, p_request=request_id, p_kind=kind)

    def recalled() -> Optional[Any]:
        found = read()
        return json.loads(found[0]["job_ids"]) if found else None

    return recalled


# PostgreSQL: the record and the pilot's touch after a match (``touch_pilot``) as one
# statement, a data-modifying CTE: one statement fewer per match.
_PG_REMEMBER_MATCH = Precompiled(
    text(
        """
        WITH remembered AS (
            INSERT INTO pilot_requests (pilot_id, request_id, kind, job_ids, created_at)
            VALUES (:p_pilot_id, :p_request_id, :p_kind, :p_job_ids, :p_created_at)
        )
        UPDATE pilots SET last_seen = :p_created_at, last_match = :p_match
        WHERE pilots.pilot_id = :p_pilot_id
        """
    )
)


def remember(
    conn: Connection,
    pilot_id: str,
    request_id: str,
    kind: str,
    record: Sequence[Any],
    *,
    last_match: str | None = None,
) -> None:
    """Record what the request with this id was given; ``last_match``: also touch the
    pilot with it, as ``pilots.touch_pilot`` does (in the same statement on PostgreSQL)."""
    params = {
        "p_pilot_id": pilot_id,
        "p_request_id": request_id,
        "p_kind": kind,
        "p_job_ids": json.dumps(list(record)),
        "p_created_at": utc_timestamp(),
    }
    if last_match is not None and conn.dialect.name == "postgresql":
        _PG_REMEMBER_MATCH.send(conn, p_match=last_match, **params)
        return
    _REMEMBER.send(conn, **params)
    if last_match is not None:
        touch_pilot(conn, pilot_id, last_match)


def any_before(conn: Connection, before: str) -> bool:
    query = select(pilot_requests.c.pilot_id).where(pilot_requests.c.created_at < before)
    return conn.execute(query.limit(1)).first() is not None


def forget_before(conn: Connection, before: str) -> int:
    """Drop records made before ``before`` (a UTC timestamp); how many were dropped."""
    result = conn.execute(delete(pilot_requests).where(pilot_requests.c.created_at < before))
    return int(result.rowcount or 0)
