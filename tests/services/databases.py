"""Which database the coordinators of a test run use: SQLite files (the default) or, with
``pytest --database postgresql`` (or ``GRIDPILOT_TEST_DATABASE=postgresql``), databases in
one throw-away PostgreSQL cluster per test session, a fresh one per data dir.

A coordinator started on a data dir it was started on before (a restart) gets the same
database back: the database's name is derived from the data dir's path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Optional

from tests.services.postgres import PostgresCluster, database_name

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
CHOICES = (SQLITE, POSTGRESQL)
ENV = "GRIDPILOT_TEST_DATABASE"
TEMPLATE = "gridpilot_template"
"""A database with the current schema, copied for each new one (faster than migrating)."""


class TestDatabases:
    def __init__(self, mode: str) -> None:
        if mode not in CHOICES:
            raise ValueError(f"--database {mode}: choose one of {', '.join(CHOICES)}")
        self.mode = mode
        self._cluster: Optional[PostgresCluster] = None

    @property
    def is_postgresql(self) -> bool:
        return self.mode == POSTGRESQL

    def cluster(self) -> PostgresCluster:
        """The session's PostgreSQL cluster, started on first use."""
        if self._cluster is None:
            cluster = PostgresCluster()
            try:
                cluster.start()
                self._make_template(cluster)
            except BaseException:
                with contextlib.suppress(Exception):
                    cluster.stop("immediate")
                shutil.rmtree(cluster.base_dir, ignore_errors=True)
                raise
            self._cluster = cluster
        return self._cluster

    def url_for(self, data_dir: Path) -> Optional[str]:
        """The database URL a coordinator on ``data_dir`` gets; None: its SQLite file."""
        if not self.is_postgresql:
            return None
        return self.postgres_url(str(Path(data_dir).resolve()))

    def postgres_url(self, key: str, *, empty: bool = False) -> str:
        """A PostgreSQL database of its own for ``key``, created on first use with the
        current schema (``empty``: without any schema)."""
        cluster = self.cluster()
        name = database_name(key)
        if not cluster.database_exists(name):
            cluster.create_database(name, template="template1" if empty else TEMPLATE)
        return cluster.url(name)

    def close(self) -> None:
        if self._cluster is not None:
            try:
                self._cluster.stop("immediate")
            finally:
                shutil.rmtree(self._cluster.base_dir, ignore_errors=True)
                self._cluster = None

    @staticmethod
    def _make_template(cluster: PostgresCluster) -> None:
        from coordinator.store import revisions
        from coordinator.store.database import Database

        db = Database(cluster.create_database(TEMPLATE))
        try:
            revisions.check(db)
        finally:
            db.dispose()


def default_mode() -> str:
    return os.environ.get(ENV, SQLITE)
