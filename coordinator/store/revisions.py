"""Schema revisions (Alembic, ``coordinator/store/migrations/``): which one a database is
at, upgrading it, and refusing to serve from one that is not the code's.

A coordinator creates the schema of an empty database itself. A database at an older
revision (or made by release 0.1.0, before migrations) is upgraded by ``gridpilot db
upgrade`` only, never behind the operator's back: a coordinator refuses to start on it
with one line naming that command.

Every upgrade runs in one transaction (PostgreSQL's DDL is transactional; on SQLite it is
one ``BEGIN IMMEDIATE``), under an advisory lock on PostgreSQL so that replicas starting
together on an empty database create it once. On SQLite foreign keys are off while a
revision runs, so that a table copied and dropped by a batch migration does not cascade
deletes into its children, and checked before the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, make_url, text
from sqlalchemy.exc import OperationalError

from coordinator.errors import CoordinatorError
from coordinator.store.database import BEGIN_MODE, Database

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).with_name("migrations")
BASELINE = "0001"
"""The schema of release 0.1.0, which made databases without an ``alembic_version`` table."""
UPGRADE_COMMAND = "gridpilot db upgrade"
PG_LOCK_KEY = 0x6772_6964_7069_6C74 & 0x7FFF_FFFF_FFFF_FFFF
"""The advisory lock every schema change takes on PostgreSQL ("gridpilt")."""
EMPTY = "empty"
PRE_MIGRATIONS = "release 0.1.0 (before migrations)"


class SchemaError(CoordinatorError):
    """The database's schema is not the one this coordinator's code needs."""

    code = "schema_revision"


def alembic_config(connection: Optional[Connection] = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The revision this code's schema (``coordinator/store/schema.py``) is at."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None, "coordinator/store/migrations has no revision"
    return revision


def current(conn: Connection) -> str:
    """The database's revision, ``EMPTY`` or ``PRE_MIGRATIONS``."""
    with _quiet_alembic():
        revision = MigrationContext.configure(conn).get_current_revision()
    if revision is not None:
        return revision
    return PRE_MIGRATIONS if inspect(conn).has_table("jobs") else EMPTY


def known(revision: str) -> bool:
    scripts = ScriptDirectory.from_config(alembic_config())
    return any(script.revision == revision for script in scripts.walk_revisions())


class DatabaseUnreachable(CoordinatorError):
    code = "database_unreachable"


@contextmanager
def reachable(db: Database) -> Iterator[Connection]:
    """``db.read()``, with a database that cannot be reached said in one line."""
    try:
        with db.read() as conn:
            yield conn
    except OperationalError as exc:
        where = make_url(db.url).render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnreachable(f"cannot reach the database {where}: {reason}") from exc


def check(db: Database) -> None:
    """Make an empty database's schema; pass a current one; ``SchemaError`` otherwise."""
    with reachable(db) as conn:
        found = current(conn)
    wanted = head()
    if found == wanted:
        return
    if found == EMPTY:
        upgrade(db, only_if_empty=True)
        return
    if found == PRE_MIGRATIONS or known(found):
        where = "from " + found if found == PRE_MIGRATIONS else "at revision " + found
        raise SchemaError(
            f"the database schema is {where}, this coordinator needs {wanted}: "
            f"run `{UPGRADE_COMMAND}` (with the same --data-dir/--database-url) first",
            details={"revision": found, "needed": wanted},
        )
    raise SchemaError(
        f"the database schema is at revision {found}, which this coordinator does not know: "
        "it was made by a newer release; run that release or a later one",
        details={"revision": found, "needed": wanted},
    )


def upgrade(db: Database, *, only_if_empty: bool = False) -> tuple[str, str]:
    """Upgrade the database to ``head()``; returns (revision before, revision after)."""
    with _migrating(db) as conn:
        found = current(conn)
        if only_if_empty and found != EMPTY:
            # Another replica made it while we waited for the lock: check it as it is now.
            return found, found
        config = alembic_config(conn)
        with _quiet_alembic():
            if found == PRE_MIGRATIONS:
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
        after = current(conn)
    if found != after:
        logger.info("database schema upgraded from %s to %s", found, after)
    return found, after


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic logs every step at INFO; we log what changed once, ourselves."""
    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    alembic_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        alembic_logger.setLevel(level)


@contextmanager
def _migrating(db: Database) -> Iterator[Connection]:
    if db.is_sqlite:
        with db.engine.connect() as conn:
            # On the driver's connection: through SQLAlchemy the pragma would open a
            # transaction first, inside which SQLite ignores it.
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                conn.info[BEGIN_MODE] = "IMMEDIATE"
                with conn.begin():
                    yield conn
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise SchemaError(
                            f"the upgrade would break {len(broken)} foreign keys; nothing changed",
                            details={"first": [str(value) for value in broken[0]]},
                        )
            finally:
                raw.execute("PRAGMA foreign_keys=ON")
        return
    with db.engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        yield conn


def schema_differences(conn: Connection) -> list[tuple[object, ...]]:
    """What Alembic's autogenerate finds between the database and ``schema.py``: empty
    when the migrations build exactly the schema the code declares (but for the name
    index, which ``name_index_objects`` finds).

    SQLite cannot reflect an index over an expression (``priority DESC``): such an index
    shows as removed and added under the same name, which is left out when the reflected
    index has the same columns in the same order."""
    from alembic.autogenerate import compare_metadata

    from coordinator.store.schema import NAME_INDEX, metadata

    def ours(name: Optional[str], _type: str, _parents: object) -> bool:
        # The name index is one dialect's own object (coordinator/store/name_index.py):
        # an FTS5 table with its shadow tables, or a GIN index; tests check it is there.
        return not (name or "").startswith(NAME_INDEX)

    context = MigrationContext.configure(conn, opts={"include_name": ours})
    found = [tuple(diff) for diff in compare_metadata(context, metadata)]
    if conn.dialect.name != "sqlite":
        return found
    removed = {diff[1].name: diff for diff in found if diff[0] == "remove_index"}
    unreflectable = set()
    for diff in found:
        if diff[0] == "add_index" and diff[1].name in removed:
            declared = [getattr(e, "name", str(e).split()[0]) for e in diff[1].expressions]
            reflected = [column.name for column in removed[diff[1].name][1].columns]
            if declared == reflected:
                unreflectable.add(diff[1].name)
    return [
        diff
        for diff in found
        if not (diff[0] in ("add_index", "remove_index") and diff[1].name in unreflectable)
    ]


def name_index_objects(conn: Connection) -> list[str]:
    """The name index's tables and indexes (SQLite) or indexes (PostgreSQL) as the
    database has them, by name."""
    from coordinator.store.schema import NAME_INDEX

    if conn.dialect.name == "sqlite":
        query = (
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index') "
            "AND name LIKE :prefix ORDER BY name"
        )
    else:
        query = "SELECT indexname FROM pg_indexes WHERE indexname LIKE :prefix ORDER BY indexname"
    return list(conn.execute(text(query), {"prefix": NAME_INDEX + "%"}).scalars())
