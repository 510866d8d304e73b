"""``gridpilot db ...``: the database's schema revision and its upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from coordinator.cli import DATA_DIR_OPTION, EXIT_USAGE, fail
from coordinator.errors import CoordinatorError

if TYPE_CHECKING:
    from coordinator.store.database import Database

DATABASE_URL_OPTION = typer.Option(
    None,
    "--database-url",
    envvar="GRIDPILOT_DATABASE_URL",
    help="SQLAlchemy URL, e.g. postgresql+psycopg://gridpilot@db/gridpilot [the data dir's SQLite]",
)
db_app = typer.Typer(help="The coordinator's database: schema revisions.", no_args_is_help=True)


def _database(data_dir: Path, database_url: Optional[str]) -> Database:
    from coordinator.settings import Settings
    from coordinator.store.database import Database

    settings = Settings(data_dir=data_dir.resolve(), database_url=database_url or "")
    if settings.database_url.startswith("sqlite") and not settings.data_dir.is_dir():
        raise fail(f"no data dir {settings.data_dir}", EXIT_USAGE)
    return Database(settings.database_url)


@db_app.command("upgrade")
def upgrade(
    data_dir: Path = DATA_DIR_OPTION, database_url: Optional[str] = DATABASE_URL_OPTION
) -> None:
    """Upgrade the database's schema to this release's (stop the coordinators first;
    back the database up first, see docs/scale-out.md)."""
    from coordinator.store import revisions

    try:
        db = _database(data_dir, database_url)
        try:
            before, after = revisions.upgrade(db)
        finally:
            db.dispose()
    except CoordinatorError as exc:
        raise fail(exc.message, EXIT_USAGE) from exc
    if before == after:
        typer.echo(f"database schema already at revision {after}")
    else:
        typer.echo(f"database schema upgraded from {before} to {after}")


@db_app.command("revision")
def revision(
    data_dir: Path = DATA_DIR_OPTION, database_url: Optional[str] = DATABASE_URL_OPTION
) -> None:
    """Print the database's schema revision and the one this release needs."""
    from coordinator.store import revisions

    try:
        db = _database(data_dir, database_url)
        try:
            with revisions.reachable(db) as conn:
                found = revisions.current(conn)
        finally:
            db.dispose()
    except CoordinatorError as exc:
        raise fail(exc.message, EXIT_USAGE) from exc
    typer.echo(f"database: {found}\nthis release: {revisions.head()}")
