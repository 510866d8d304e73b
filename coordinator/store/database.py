"""The engine, its per-dialect tuning, and the two kinds of transaction the coordinator uses.

Two databases are supported: SQLite (one file in the data dir, one coordinator process) and
PostgreSQL through psycopg 3 (any number of coordinator processes, see docs/scale-out.md).
The store's queries are the same SQLAlchemy Core for both; what differs is here and in
``coordinator/store/dialects.py``.
"""

from __future__ import annotations

import copy
import logging
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, InvalidatePoolError, NoSuchModuleError

from coordinator.errors import CoordinatorError, WriterBusy

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
BEGIN_MODE = "gridpilot_begin"
"""Key of ``Connection.info`` read by SQLite's "begin" listener: the mode of the next
``BEGIN`` (``IMMEDIATE`` for writes)."""
PIPELINE = "gridpilot_pipeline"
"""Key of ``Connection.info``: the psycopg ``Pipeline`` of a pipelined write transaction
(PostgreSQL, ``Database.write(pipelined=True)``), read by ``store.precompiled``."""
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
PG_POOL_SIZE = 10
PG_POOL_OVERFLOW = 20
PG_STATEMENT_TIMEOUT_MS = 60_000
"""No statement waits on a lock or runs for longer: a stuck transaction fails a request
(which the pilot retries) instead of holding a pool connection for ever."""


class DatabaseUrlError(CoordinatorError):
    """A database URL that names no database gridpilot can use."""

    code = "bad_database_url"


def normalise_url(url: str) -> str:
    """``url`` with PostgreSQL's driver made explicit (psycopg 3), checked to name SQLite
    or PostgreSQL; ``DatabaseUrlError`` otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(f"cannot read the database URL {url!r}: {exc}") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = POSTGRESQL
    if backend == POSTGRESQL and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == SQLITE and driver in ("", "pysqlite"):
        return url
    raise DatabaseUrlError(
        f"unsupported database URL {parsed.render_as_string()!r}: use sqlite:///PATH "
        "or postgresql+psycopg://USER@HOST/NAME"
    )


class WriterTurns:
    """Whose turn it is to write, among the threads of this process (SQLite only).

    SQLite's busy handler polls a taken write lock with growing sleeps (up to 100 ms), so
    under load a waiting writer slept on long after the lock was free (match p99 near 1 s,
    see docs/benchmarks.md); a thread waiting on a Python lock is woken when it is
    released. Other processes on the same file still queue on ``busy_timeout``.

    A turn taken without waiting (the event loop's thread, ``coordinator.api.hotpath``) is
    refused while any thread waits: the loop thread holds the GIL and would otherwise
    take the lock again and again before a woken thread could run, and starve it.
    """

    def __init__(self) -> None:
        # Reentrant: a nested write (a bug) then fails on busy_timeout as before, not hangs.
        self._lock = threading.RLock()
        self._count_lock = threading.Lock()
        self._waiting = 0

    @contextmanager
    def take(self, *, wait: bool) -> Iterator[None]:
        if not wait:
            if self._waiting or not self._lock.acquire(blocking=False):
                raise WriterBusy("another write of this process is under way")
            acquired = True
        else:
            with self._count_lock:
                self._waiting += 1
            try:
                # After busy_timeout without a turn, go on and let SQLite's own locking
                # decide, exactly as without this lock.
                acquired = self._lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000)
            finally:
                with self._count_lock:
                    self._waiting -= 1
        try:
            yield
        finally:
            if acquired:
                self._lock.release()


class Database:
    """One engine per coordinator process. ``read()`` and ``write()`` each yield a
    Connection in a transaction that commits on success and rolls back on error.

    On SQLite a write transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock
    before its first read, so a read-then-update (a match claim, a status change) never
    fails half-way on a lock upgrade and writers queue on ``busy_timeout`` instead; the
    threads of one process take turns before ``BEGIN`` (``WriterTurns``).

    On PostgreSQL transactions are READ COMMITTED and run side by side, in this process and
    in every other coordinator on the same database: what must happen once is a
    conditional UPDATE, an ``INSERT ... ON CONFLICT`` or a row lock (``FOR UPDATE SKIP
    LOCKED`` where others may take another row instead), never a read-then-write.
    """

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        self.is_sqlite = self.dialect == SQLITE
        self._turns = WriterTurns()
        self.waits_for_writers = True
        """False in the view ``without_waiting`` returns."""
        try:
            self.engine: Engine = self._create_engine()
        except NoSuchModuleError as exc:
            raise DatabaseUrlError(f"no driver for {self.url!r}: {exc}") from exc
        except ImportError as exc:
            raise DatabaseUrlError(
                f"PostgreSQL needs psycopg 3: pip install 'gridpilot[postgresql]' ({exc})"
            ) from exc

    def _create_engine(self) -> Engine:
        if self.is_sqlite:
            # LIFO: a write takes the connection that wrote last. SQLite drops a
            # connection's whole page cache when another connection committed since its
            # last transaction, so FIFO's turn-taking over the idle connections made most
            # writes start cold and read every page of every index again (a k=1 match
            # 15-25% dearer with three idle connections: docs/benchmarks.md, "Hot path:
            # the regression A/B").
            engine = create_engine(
                self.url,
                pool_size=8,
                max_overflow=24,
                pool_use_lifo=True,
                connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            )
            _tune_sqlite(engine)
            return engine
        engine = create_engine(
            self.url,
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_POOL_OVERFLOW,
            # A replica outlives database restarts: a connection the server closed is
            # found out before use and replaced, not handed to a request; by a look at its
            # socket (``_check_alive``), not SQLAlchemy's pre-ping, a round trip per
            # checkout (a sixth of a match's round trips and a tenth of its Python).
            pool_pre_ping=False,
            connect_args={
                "connect_timeout": 10,
                "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
                "application_name": "gridpilot-coordinator",
            },
        )
        event.listen(engine, "after_cursor_execute", _sync_pipeline)
        event.listen(engine, "checkout", _check_alive)
        return engine

    def describe(self) -> str:
        """The URL without its password, for logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    def analyze(self) -> None:
        """Refresh SQLite's statistics of the jobs table, so the query planner knows that,
        say, a status matches a third of a million jobs and walking an index in sort order
        is cheaper than sorting them (the Job Monitor's searches: 10-100x faster, see
        docs/benchmarks.md). A full pass (a sampled one reads only the first entries of each
        index, which are alike): about a second per million jobs, during which other
        writers wait; the sweeper runs it hourly. PostgreSQL's autovacuum does this."""
        if not self.is_sqlite:
            return
        with self.write() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=0")
            conn.exec_driver_sql("ANALYZE jobs")

    def dispose(self) -> None:
        self.engine.dispose()

    def without_waiting(self) -> Database:
        """This database (same engine, same turns), but a ``write`` that would wait for
        another writer of this process raises ``WriterBusy`` before doing anything.

        For the event loop's thread (``coordinator.api.hotpath``): it may run a short
        write itself only if nothing makes it wait; otherwise it hands the work to a
        thread. Only SQLite, whose writes never leave the process, is worth this.
        """
        view = copy.copy(self)
        view.waits_for_writers = False
        return view

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self, *, pipelined: bool = False) -> Iterator[Connection]:
        """A write transaction. ``pipelined`` (the hot path's short transactions; ignored
        on SQLite): on PostgreSQL its statements go out in psycopg's pipeline mode
        (``_pipelined``), so that those whose outcome nobody reads before the commit
        (``Precompiled.send``, ``run_many``) travel with the next statement that answers,
        ``BEGIN`` with the first and ``COMMIT`` with the last: a match went from 12 round
        trips to the server to 3, a heartbeat from 7 to 2 (with the statements folded
        together by data-modifying CTEs and no pre-ping; docs/benchmarks.md)."""
        with self._turn(), self.engine.connect() as conn:
            # Read by the "begin" listener of SQLite; set on the connection's info rather
            # than through execution_options, whose copy of the Connection cost a fifth of
            # an empty write transaction.
            conn.info[BEGIN_MODE] = "IMMEDIATE"
            if pipelined and not self.is_sqlite:
                with conn.begin(), _pipelined(conn):
                    yield conn
            else:
                with conn.begin():
                    yield conn

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This process's turn to write (SQLite only; other databases lock rows)."""
        if not self.is_sqlite:
            yield
            return
        with self._turns.take(wait=self.waits_for_writers):
            yield


@contextmanager
def _pipelined(conn: Connection) -> Iterator[None]:
    """The transaction of ``conn`` (PostgreSQL, psycopg 3) in pipeline mode, with its own
    ``BEGIN`` and ``COMMIT`` queued in the pipeline.

    psycopg would send its implicit ``BEGIN`` and wait for the answer before anything else
    (it must know the transaction started), and sync once more when the pipeline ends after
    its ``COMMIT``: two round trips of nothing. So the connection is put in autocommit for
    the transaction (psycopg then starts none) and the transaction block is ours; a
    ``Sync`` inside it does not end it. SQLAlchemy's own ``commit`` then finds the
    connection idle and does nothing. On an error, whatever was sent is rolled back."""
    raw: Any = conn.connection.dbapi_connection
    raw.autocommit = True
    try:
        with raw.pipeline() as pipeline:
            conn.info[PIPELINE] = pipeline
            raw.execute("BEGIN")
            yield
            raw.execute("COMMIT")
    finally:
        conn.info.pop(PIPELINE, None)
        if not raw.broken:
            raw.rollback()  # nothing to do after a COMMIT: the connection is idle
            raw.autocommit = False


def _check_alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """On checkout from the pool (PostgreSQL): refuse a connection the server has closed,
    so that the pool replaces it, and every other connection it made before (the server
    restarted: all are dead; ``InvalidatePoolError``, as a failed pre-ping does), instead
    of handing it out.

    An idle connection in the pool has nothing to read: the server writes to it only to
    answer, or when it ends the session (a restart or shutdown sends a FATAL message, a
    killed server leaves the socket at end of file). So a socket with something to read
    is a dead one, found by a poll that does not wait, where a pre-ping waited for a
    round trip to the server. (A server that reports a changed setting to idle sessions,
    after an administrator's reload, costs the pool a reconnection, nothing else.) A server
    gone without a word (a host down, a cable cut) is
    found by the next statement's error, as before (the request answers 503)."""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise InvalidatePoolError("the connection is closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if poller.poll(0):
        raise InvalidatePoolError("the server closed the connection or wrote to it unasked")


def _sync_pipeline(conn: Connection, *_args: Any) -> None:
    """After a statement SQLAlchemy runs itself (``after_cursor_execute``): in a pipelined
    transaction, wait for its result, which SQLAlchemy reads next (its columns, its row
    count) and which pipeline mode would otherwise leave on the wire."""
    pipeline = conn.info.get(PIPELINE)
    if pipeline is not None:
        pipeline.sync()


def _tune_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling would hide BEGIN from us; we issue it ourselves.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.info.pop(BEGIN_MODE, "DEFERRED")
        # Straight to the DBAPI connection: through exec_driver_sql, BEGIN cost as much
        # CPU as a heartbeat's UPDATE.
        conn.connection.dbapi_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]
