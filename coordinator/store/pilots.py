"""Queries on registered pilots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, RowMapping, insert, select, update

from coordinator.store.schema import pilots, utc_timestamp


def insert_pilot(conn: Connection, row: Mapping[str, Any]) -> None:
    now = utc_timestamp()
    conn.execute(insert(pilots).values(registered_at=now, last_seen=now, **row))


def get_pilot(conn: Connection, pilot_id: str) -> RowMapping | None:
    query = select(pilots).where(pilots.c.pilot_id == pilot_id)
    return conn.execute(query).mappings().first()


def touch_pilot(conn: Connection, pilot_id: str) -> None:
    """Record that the pilot was heard from just now."""
    conn.execute(
        update(pilots).where(pilots.c.pilot_id == pilot_id).values(last_seen=utc_timestamp())
    )
