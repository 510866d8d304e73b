"""The few statements that SQLite and PostgreSQL spell differently, chosen by the
connection's dialect: inserts that leave or update an existing row in one statement, so
that no caller reads first and inserts after (which is safe only under SQLite's single
writer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, text
from sqlalchemy.dialects import postgresql, sqlite


def dialect_insert(dialect_name: str, table: Table) -> Any:
    """The dialect's own ``insert(table)``, which knows ``ON CONFLICT``."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _insert(conn: Connection, table: Table) -> Any:
    return dialect_insert(conn.dialect.name, table)


def insert_missing(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], key: Sequence[str]
) -> int:
    """``INSERT ... ON CONFLICT (key) DO NOTHING``: how many rows were new (counted from
    ``RETURNING``, which psycopg's row count does not replace here)."""
    if not rows:
        return 0
    statement = (
        _insert(conn, table)
        .on_conflict_do_nothing(index_elements=list(key))
        .returning(table.c[key[0]])
    )
    params: Any = dict(rows[0]) if len(rows) == 1 else [dict(row) for row in rows]
    return len(conn.execute(statement, params).all())


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: Sequence[str],
    update: Sequence[str],
) -> None:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of the ``update`` columns."""
    if not rows:
        return
    statement = _insert(conn, table)
    statement = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={column: statement.excluded[column] for column in update},
    )
    conn.execute(statement, [dict(row) for row in rows])


def next_ids(conn: Connection, sequence: str, count: int) -> list[int]:
    """``count`` new ids from a PostgreSQL sequence, in one round trip.

    A bulk insert then names its ids and goes as a pipelined ``executemany`` of one short
    statement: with ``INSERT ... VALUES (...), (...) RETURNING`` psycopg parses a new
    statement of tens of thousands of placeholders per page, 4x slower for 10,000 jobs."""
    query = text(f"SELECT nextval('{sequence}') FROM generate_series(1, :count)")
    return [int(value) for value in conn.execute(query, {"count": count}).scalars()]
