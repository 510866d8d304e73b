"""Requests pilots already had applied, remembered by the id the pilot chose."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Optional

from sqlalchemy import Connection, delete, insert, select

from coordinator.store.schema import pilot_requests, utc_timestamp

MATCH = "match"
STATUS = "status"


def recall(conn: Connection, pilot_id: str, request_id: str, kind: str) -> Optional[Any]:
    """What the first request with this id recorded (decoded JSON), or None if there was none."""
    query = select(pilot_requests.c.job_ids).where(
        pilot_requests.c.pilot_id == pilot_id,
        pilot_requests.c.request_id == request_id,
        pilot_requests.c.kind == kind,
    )
    found = conn.execute(query).scalar()
    return None if found is None else json.loads(found)


def remember(
    conn: Connection, pilot_id: str, request_id: str, kind: str, record: Sequence[Any]
) -> None:
    conn.execute(
        insert(pilot_requests).values(
            pilot_id=pilot_id,
            request_id=request_id,
            kind=kind,
            job_ids=json.dumps(list(record)),
            created_at=utc_timestamp(),
        )
    )


def any_before(conn: Connection, before: str) -> bool:
    query = select(pilot_requests.c.pilot_id).where(pilot_requests.c.created_at < before)
    return conn.execute(query.limit(1)).first() is not None


def forget_before(conn: Connection, before: str) -> int:
    """Drop records made before ``before`` (a UTC timestamp); how many were dropped."""
    result = conn.execute(delete(pilot_requests).where(pilot_requests.c.created_at < before))
    return int(result.rowcount or 0)
