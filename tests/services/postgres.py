"""A throw-away PostgreSQL cluster for tests and benches: ``initdb`` + ``pg_ctl`` in a
temporary directory, listening on 127.0.0.1 and a socket of its own, run as an unprivileged
user (``postgres``, Debian's, when we are root: the server refuses to run as root).

``tests/setup-system.sh`` installs PostgreSQL 15 from Debian's packages. Nothing here
touches the system's own clusters. Durability is off (``fsync``, ``synchronous_commit``):
a test cluster is thrown away, and a production one must keep both on.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import psutil

from tests.services.ports import free_port

START_TIMEOUT_S = 60
SUPERUSER = "gridpilot"
PREFIX = "gridpilot-pg-"
OWNER_FILE = "owner.pid"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def bin_dir() -> Path:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are: Debian keeps them off PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    raise PostgresUnavailable(
        "PostgreSQL's server is not installed: run tests/setup-system.sh as root "
        "(Debian package postgresql-15)"
    )


def _version_key(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0


class PostgresCluster:
    """One server: ``start()``, ``create_database()``, ``restart()``, ``stop()``."""

    def __init__(self, base_dir: Optional[Path] = None, port: Optional[int] = None) -> None:
        # Under /tmp directly: the server's user must reach it, and pytest's own temporary
        # directories are private to us.
        if base_dir is None:
            base_dir = Path(tempfile.mkdtemp(prefix=PREFIX))
            # Whose cluster this is: a session killed before its teardown leaves a server
            # running, which the next session stops (stop_orphaned_clusters).
            (base_dir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.base_dir = base_dir
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_path = self.base_dir / "postgres.log"
        self.port = port or free_port()
        self.bin_dir = bin_dir()
        self._run_as = _unprivileged_user()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresCluster:
        if not self.data_dir.exists():
            self._init()
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-l",
            str(self.log_path),
            "-o",
            f"-p {self.port} -k {self.socket_dir}",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._pg_ctl("stop", "-w", "-t", str(START_TIMEOUT_S), "-m", mode)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database, autocommit=True
        ) as conn:
            cursor = conn.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self, name: str, template: str = "template1") -> str:
        """A new empty database (or a copy of ``template``); returns its URL."""
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def database_exists(self, name: str) -> bool:
        rows = self.execute(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        return bool(rows)

    def _init(self) -> None:
        for path in (self.base_dir, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            self._give(path)
        self._run(
            self.bin_dir / "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "shared_buffers": "128MB",
        }
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _give(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _pg_ctl(self, *args: str) -> None:
        self._run(self.bin_dir / "pg_ctl", "-D", str(self.data_dir), *args)

    def _run(self, *args: Any) -> None:
        command = [str(arg) for arg in args]
        user = self._run_as.pw_name if self._run_as is not None else None
        result = subprocess.run(
            command, user=user, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30
        )
        if result.returncode != 0:
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{log[-3000:]}"
            )


def _unprivileged_user() -> Optional[pwd.struct_passwd]:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable("running as root and no user 'postgres' to run PostgreSQL as")


@contextlib.contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """A new cluster in a new temporary directory, stopped and deleted afterwards."""
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(cluster.base_dir, ignore_errors=True)


def stop_orphaned_clusters(tmp_dir: Optional[Path] = None) -> list[Path]:
    """Stop and delete the clusters whose test session died without its teardown (killed
    by a timeout or SIGKILL): ``pg_ctl`` daemonises the server, so nothing else would.
    Returns the directories removed."""
    removed = []
    for base_dir in Path(tmp_dir or tempfile.gettempdir()).glob(PREFIX + "*"):
        owner = base_dir / OWNER_FILE
        try:
            owner_pid = int(owner.read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or still being created
        if psutil.pid_exists(owner_pid):
            continue
        cluster = PostgresCluster(base_dir)
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError, OSError):
            cluster.stop("immediate")
        shutil.rmtree(base_dir, ignore_errors=True)
        removed.append(base_dir)
    return removed


def database_name(key: str) -> str:
    """A database name of its own for ``key`` (a data dir's path), the same every time."""
    return "gp_" + hashlib.sha256(key.encode()).hexdigest()[:20]


def wait_accepting(cluster: PostgresCluster, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cluster.execute("SELECT 1")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
