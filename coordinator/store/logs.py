"""Stored log lengths (table ``logs``). Callers own the transaction; files are not here."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, select

from coordinator.store.dialects import upsert
from coordinator.store.schema import logs, utc_timestamp

JOB = "job"
PILOT = "pilot"


def size_of(conn: Connection, kind: str, owner_id: str, stream: str) -> int:
    query = select(logs.c.size_bytes).where(
        logs.c.kind == kind, logs.c.owner_id == owner_id, logs.c.stream == stream
    )
    size = conn.scalar(query)
    return int(size) if size is not None else 0


def total_of(conn: Connection, kind: str, owner_id: str) -> int:
    """Bytes stored over every stream of one job or pilot."""
    query = select(func.coalesce(func.sum(logs.c.size_bytes), 0)).where(
        logs.c.kind == kind, logs.c.owner_id == owner_id
    )
    return int(conn.scalar(query) or 0)


def set_size(conn: Connection, kind: str, owner_id: str, stream: str, size_bytes: int) -> None:
    row = {"kind": kind, "owner_id": owner_id, "stream": stream, "size_bytes": size_bytes}
    row["updated_at"] = utc_timestamp()
    upsert(conn, logs, [row], ["kind", "owner_id", "stream"], ["size_bytes", "updated_at"])


def clear(conn: Connection, kind: str, owner_id: str) -> None:
    """Forget every stream of one job or pilot (their files are truncated on next append)."""
    conn.execute(delete(logs).where(logs.c.kind == kind, logs.c.owner_id == owner_id))
