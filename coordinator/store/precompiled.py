"""Statements of the hot path, compiled once per dialect and run on the DBAPI cursor.

A pilot's match, heartbeat and report each run a handful of short statements. Through
SQLAlchemy Core every execution builds the statement's expression tree, computes its cache
key, sets up an execution context and wraps the result: 60 to 300 microseconds of CPU for a
statement SQLite runs in 10 (an indexed look-up of one row, measured in-process). A
``Precompiled`` statement is written once in Core, so it stays portable: SQLAlchemy
compiles it for the connection's dialect the first time (with that dialect's parameter
style: ``?`` for SQLite, ``%(name)s`` for psycopg), and every later execution hands the SQL
text and the parameters straight to the DBAPI cursor of the same connection, inside the
caller's transaction.

What SQLAlchemy would have added is the caller's to provide: every column of an INSERT
(Python-side column defaults are not applied) and plain values (no type conversion: on
SQLite a Boolean reads back as 0 or 1). Rows come back as dicts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

from sqlalchemy import Connection
from sqlalchemy.sql import ClauseElement

from coordinator.store.database import PIPELINE

Row = Mapping[Any, Any]
"""A row as the store hands it out: SQLAlchemy's ``RowMapping`` or a precompiled
statement's dict."""


class Precompiled:
    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _sql(self, conn: Connection) -> _Compiled:
        """The SQL text for this connection's dialect, with how to lay out parameters."""
        dialect = conn.dialect
        key = (dialect.name, dialect.driver)  # drivers of one database differ in style
        found = self._compiled.get(key)
        if found is None:
            compiled: Any = self.statement.compile(dialect=dialect)  # an SQLCompiler
            names = tuple(compiled.positiontup or ()) if compiled.positional else None
            # Values SQLAlchemy bound itself (an OFFSET 0 it adds to a bound LIMIT, say).
            fixed = {k: v for k, v in compiled.params.items() if v is not None}
            found = self._compiled[key] = _Compiled(compiled.string, names, fixed)
        return found

    def _cursor(self, conn: Connection) -> tuple[Any, _Compiled]:
        return conn.connection.cursor(), self._sql(conn)

    def rows(self, conn: Connection, **params: Any) -> list[dict[str, Any]]:
        cursor, compiled = self._cursor(conn)
        try:
            cursor.execute(compiled.sql, compiled.arguments(params))
            return compiled.fetched(cursor)
        finally:
            cursor.close()

    def rows_later(self, conn: Connection, **params: Any) -> Callable[[], list[dict[str, Any]]]:
        """Execute now, read the rows when the returned function is called: in a pipelined
        transaction (``Database.write(pipelined=True)``) the statements sent this way
        before the first read travel to the server and back together, one round trip for
        all, and run there in the order sent. Elsewhere the rows are read at once."""
        cursor, compiled = self._cursor(conn)
        try:
            cursor.execute(compiled.sql, compiled.arguments(params))
            if conn.info.get(PIPELINE) is None:
                found = compiled.fetched(cursor)
                cursor.close()
                return lambda: found
        except BaseException:
            cursor.close()
            raise

        def read() -> list[dict[str, Any]]:
            try:
                return compiled.fetched(cursor)
            finally:
                cursor.close()

        return read

    def first(self, conn: Connection, **params: Any) -> Optional[dict[str, Any]]:
        found = self.rows(conn, **params)
        return found[0] if found else None

    def run(self, conn: Connection, **params: Any) -> int:
        """Execute; the number of rows changed."""
        cursor, compiled = self._cursor(conn)
        try:
            cursor.execute(compiled.sql, compiled.arguments(params))
            pipeline = conn.info.get(PIPELINE)
            if pipeline is not None:
                pipeline.sync()  # the row count is the server's answer: wait for it
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def send(self, conn: Connection, **params: Any) -> None:
        """Execute, for a write whose outcome the caller does not read: in a pipelined
        transaction (``Database.write(pipelined=True)``) it goes out with the next
        statement that answers, or the commit, and an error it meets fails that one."""
        cursor, compiled = self._cursor(conn)
        try:
            cursor.execute(compiled.sql, compiled.arguments(params))
        finally:
            cursor.close()

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row; like ``send``, nobody waits for the outcome in a
        pipelined transaction."""
        if not rows:
            return
        cursor, compiled = self._cursor(conn)
        try:
            if len(rows) == 1:  # psycopg's executemany opens a pipeline of its own
                cursor.execute(compiled.sql, compiled.arguments(rows[0]))
            else:
                cursor.executemany(compiled.sql, [compiled.arguments(row) for row in rows])
        finally:
            cursor.close()


@dataclasses.dataclass
class _Compiled:
    sql: str
    names: Optional[tuple[str, ...]]
    """The parameter names in order when the dialect's parameters are positional; None
    when they go by name."""
    fixed: Mapping[str, Any]
    columns: Optional[list[str]] = None
    """The result's column names, read from the first result: a statement's are always
    the same, and psycopg builds its ``description`` anew for every result (a tenth of
    the Python of a PostgreSQL read)."""

    def fetched(self, cursor: Any) -> list[dict[str, Any]]:
        found = cursor.fetchall()  # first: in a pipeline, the result is here only now
        columns = self.columns
        if columns is None:
            columns = self.columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row)) for row in found]

    def arguments(self, params: Mapping[str, Any]) -> Any:
        values = {**self.fixed, **params} if self.fixed else params
        if self.names is None:
            return values
        return tuple(values[name] for name in self.names)


class PerDialect:
    """A statement that each database spells its own way (an ``INSERT ... ON CONFLICT``,
    built with the dialect's own ``insert``): one ``Precompiled`` per dialect name, built by
    ``build(name)`` on first use."""

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._by_dialect: dict[str, Precompiled] = {}

    def on(self, conn: Connection) -> Precompiled:
        name = conn.dialect.name
        found = self._by_dialect.get(name)
        if found is None:
            found = self._by_dialect[name] = Precompiled(self._build(name))
        return found


def per_count(build: Callable[[int], ClauseElement]) -> Callable[[int], Precompiled]:
    """Statements that differ by a count (``IN`` lists of n parameters ``id0 .. id{n-1}``),
    each compiled once per count."""

    @functools.lru_cache(maxsize=256)
    def statement(count: int) -> Precompiled:
        return Precompiled(build(count))

    return statement
