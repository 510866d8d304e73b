"""Shared fixtures: a real coordinator process on 127.0.0.1 and tokens for it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.logic.auth import issue_token, load_or_create_signing_key
from protocol import API_PREFIX, PROTOCOL_HEADER, PROTOCOL_VERSION, Role
from tests.services.databases import CHOICES, TestDatabases, default_mode
from tests.services.ports import free_port
from tests.services.postgres import PostgresCluster, stop_orphaned_clusters
from tests.services.s3 import S3Server, running_s3

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 30.0
DATABASES = TestDatabases(default_mode())
"""The session's choice of database for every coordinator it starts (``--database``)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database",
        choices=CHOICES,
        default=default_mode(),
        help="database of the coordinators the tests start: sqlite (default) or postgresql "
        "(one throw-away cluster for the session, a fresh database per coordinator)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global DATABASES
    DATABASES = TestDatabases(config.getoption("--database"))
    if not hasattr(config, "workerinput"):
        # Once per run, in pytest-xdist's controller (or the only process): each worker has
        # a cluster of its own, owned by its pid, and only dead owners' clusters are reaped.
        for base_dir in stop_orphaned_clusters():
            logging.getLogger(__name__).warning(
                "stopped an earlier session's PostgreSQL in %s", base_dir
            )
    config.addinivalue_line(
        "markers", "sqlite_only: reads or writes the SQLite file itself; skipped on PostgreSQL"
    )
    # pytest-xdist's own mark, declared here too so --strict-markers accepts it without xdist.
    config.addinivalue_line("markers", "xdist_group(name): run on the one worker of the group")


def pytest_unconfigure(config: pytest.Config) -> None:
    DATABASES.close()


MACHINE_WIDE_FIXTURES = {"slurm_env": "slurm"}
"""Session fixtures over something the machine has only one of, and the pytest-xdist group
of the tests using them: one worker runs them all (``--dist loadgroup``). Two workers would
each start, and at their end stop, the one test Slurm under the other's jobs."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="looks into the SQLite file; run without --database")
    for item in items:
        if DATABASES.is_postgresql and "sqlite_only" in item.keywords:
            item.add_marker(skip)
        fixtures = getattr(item, "fixturenames", ())
        for group in {MACHINE_WIDE_FIXTURES[f] for f in fixtures if f in MACHINE_WIDE_FIXTURES}:
            item.add_marker(pytest.mark.xdist_group(group))


@dataclasses.dataclass
class RunningCoordinator:
    """A coordinator server process and what a test needs to talk to it."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    signing_key: Ed25519PrivateKey
    log_path: Path
    database_url: str = ""

    def token(
        self,
        role: str | Role = "user",
        subject: str = "alice",
        vo: str = "vo1",
        *,
        ttl_s: int = 3600,
        group: str = "",
    ) -> str:
        return issue_token(
            self.signing_key, subject=subject, vo=vo, role=Role(role), ttl_s=ttl_s, group=group
        )

    def headers(self, token: str, **extra: str) -> dict[str, str]:
        """Bearer auth plus the protocol header pilots send (harmless for users)."""
        return {
            "Authorization": f"Bearer {token}",
            PROTOCOL_HEADER: str(PROTOCOL_VERSION),
            **extra,
        }

    def api(self, path: str) -> str:
        return f"{self.url}{API_PREFIX}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run one SQL statement on the coordinator's database, as an operator (or an
        older release) could; returns the rows of a query."""
        from sqlalchemy import text

        from coordinator.store.database import Database

        db = Database(self.database_url)
        try:
            with db.write() as conn:
                result = conn.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            db.dispose()


class PortTaken(RuntimeError):
    """The port given to a coordinator was bound by someone else first."""


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"coordinator exited with {process.returncode}:\n{log_path.read_text()}"
            )
        try:
            # Healthy, and ours: another test's server may hold the port we were given (a
            # free port is only free until someone binds it), and answering for ours it
            # would make a test pass or fail on the wrong coordinator.
            healthy = requests.get(f"{url}/health", timeout=1).status_code == 200
            if healthy and _listens_on(process.pid, int(url.rsplit(":", 1)[1])):
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or too busy starting to answer within the second
        time.sleep(0.05)
    raise RuntimeError(f"coordinator did not become healthy:\n{log_path.read_text()}")


def _listens_on(pid: int, port: int) -> bool:
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stop_and_check(running: RunningCoordinator) -> None:
    """Stop the server and fail if it logged an unhandled error (a 500) meanwhile."""
    _stop(running.process)
    log = running.log()
    assert "Traceback" not in log, f"the coordinator logged an unhandled error:\n{log}"


def launch_coordinator(
    data_dir: Path,
    port: int | None = None,
    *,
    env: dict[str, str] | None = None,
    key_dir: Path | None = None,
    **flags: Any,
) -> RunningCoordinator:
    """Start ``gridpilot serve`` on a free port and wait until it is healthy.

    ``flags`` become command-line options: ``max_sandbox_bytes=1024`` is
    ``--max-sandbox-bytes 1024``. The caller stops ``.process``. Give ``port`` (and the
    same ``data_dir``) to restart a stopped coordinator where its clients expect it.
    ``env`` adds environment variables (an S3 store's endpoint and keys); ``key_dir``: a
    directory whose ``signing-key.pem`` this coordinator shares (replicas).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    key = load_or_create_signing_key(key_dir or data_dir)
    if key_dir is not None:
        flags = {**flags, "signing_key_file": key_dir / "signing-key.pem"}
    if port is None:
        # A port found free may be taken before the coordinator binds it: another go.
        for _attempt in range(3):
            try:
                return launch_coordinator(data_dir, free_port(), env=env, key_dir=key_dir, **flags)
            except PortTaken:
                continue
        raise RuntimeError("three free ports in a row were taken before the coordinator bound them")
    args = [sys.executable, "-m", "coordinator", "serve", "--data-dir", str(data_dir)]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    database_url = DATABASES.url_for(data_dir)
    if database_url is not None and "database_url" not in flags:
        flags = {**flags, "database_url": database_url}
    for name, value in flags.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log_path)
    except BaseException:
        _stop(process)
        if "address already in use" in log_path.read_text(errors="replace"):
            raise PortTaken(port) from None
        raise
    database = str(flags.get("database_url") or f"sqlite:///{data_dir / 'gridpilot.db'}")
    return RunningCoordinator(url, data_dir, process, key, log_path, database)


@pytest.fixture(scope="session")
def pilot_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gridpilot-pilot.pyz`` and its ``.sha256``, built once per session from this checkout by
    ``packaging/build-pyz.sh`` (how CI builds it), alone in a directory of their own. Running
    the pyz writes nothing beside it, so tests share it; a test that spoils it copies it first."""
    output = tmp_path_factory.mktemp("pyz") / "gridpilot-pilot.pyz"
    subprocess.run(
        ["bash", str(REPO_ROOT / "packaging" / "build-pyz.sh"), str(output)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return output


@pytest.fixture(scope="session")
def slurm_env() -> Iterator[dict[str, str]]:
    """The one-node test Slurm (tests/slurm/start-slurm.sh) and the environment its commands
    need. Daemons this session started are stopped at its end; a Slurm that was already up
    (a developer's, shared) is left running."""
    from tests.slurm.cluster import ensure_slurm, slurm_running, stop_slurm

    with _one_worker_of_the_run("slurm"):
        already_up = slurm_running()
        env = ensure_slurm()  # fails under CI when no Slurm can be started, skips elsewhere
        yield env
        if not already_up:
            stop_slurm()


@contextlib.contextmanager
def _one_worker_of_the_run(group: str) -> Iterator[None]:
    """Fail loudly when two pytest-xdist workers of one run set up the same machine-wide
    fixture: its ``xdist_group`` (MACHINE_WIDE_FIXTURES) was not honoured."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run_id is None:
        yield  # one process: nothing to share
        return
    claim = Path(tempfile.gettempdir()) / f"gridpilot-xdist-{run_id}-{group}"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "?")
    try:
        fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pytest.fail(
            f"worker {worker} needs the {group} fixture that worker "
            f"{claim.read_text()} of this run holds: run with --dist loadgroup"
        )
    os.write(fd, worker.encode())
    os.close(fd)
    try:
        yield
    finally:
        claim.unlink()


@pytest.fixture
def start_coordinator(tmp_path: Path) -> Iterator[Callable[..., RunningCoordinator]]:
    """Start coordinators with extra flags, e.g. ``start_coordinator(max_sandbox_bytes=1024)``;
    all are stopped after the test."""
    started: list[RunningCoordinator] = []

    def start(**flags: Any) -> RunningCoordinator:
        running = launch_coordinator(tmp_path / f"coordinator-{len(started)}", **flags)
        started.append(running)
        return running

    yield start
    for running in started:
        _stop_and_check(running)


@pytest.fixture
def coordinator(start_coordinator: Callable[..., RunningCoordinator]) -> RunningCoordinator:
    """A coordinator with default settings, fresh for each test."""
    return start_coordinator()


@pytest.fixture(scope="module")
def shared_coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCoordinator]:
    """One coordinator for a whole test module (starting one takes about a second).
    Tests sharing it keep apart by using their own VO (see ``vo``)."""
    running = launch_coordinator(tmp_path_factory.mktemp("shared-coordinator"))
    yield running
    _stop_and_check(running)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The database URL of this test's in-process coordinator: an SQLite file in
    ``tmp_path``, or a fresh PostgreSQL database with ``--database postgresql``."""
    return DATABASES.url_for(tmp_path) or f"sqlite:///{tmp_path / 'gridpilot.db'}"


@pytest.fixture(scope="session")
def postgres_cluster() -> PostgresCluster:
    """The session's PostgreSQL cluster, whatever ``--database`` says (replica tests)."""
    return DATABASES.cluster()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One S3 server (SeaweedFS) for the session; tests keep apart by their key prefix."""
    with running_s3() as server:
        yield server


@pytest.fixture
def vo(request: pytest.FixtureRequest) -> str:
    """A VO name of this test's own, so tests sharing a coordinator never see each other's jobs."""
    return f"vo-{request.node.name}"
