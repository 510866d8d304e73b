"""A scale-out deployment for tests: one PostgreSQL database, one S3 bucket prefix, one
signing key, N ``gridpilot serve`` replicas and haproxy in front, all real and on
127.0.0.1, all stopped after the test."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from coordinator.logic.auth import load_or_create_signing_key
from protocol import Role
from tests.conftest import DATABASES, RunningCoordinator, _stop_and_check, launch_coordinator
from tests.services.haproxy import Haproxy
from tests.services.postgres import PostgresCluster
from tests.services.s3 import S3Server


@dataclasses.dataclass
class Deployment:
    database_url: str
    store: str
    env: dict[str, str]
    key_dir: Path
    base_dir: Path
    flags: dict[str, Any]
    replicas: list[RunningCoordinator] = dataclasses.field(default_factory=list)
    proxy: Haproxy | None = None

    @property
    def url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url

    def start_replica(self, port: int | None = None) -> RunningCoordinator:
        index = len(self.replicas)
        replica = launch_coordinator(
            self.base_dir / f"replica-{index}",
            port,
            env=self.env,
            key_dir=self.key_dir,
            database_url=self.database_url,
            sandbox_store=self.store,
            **self.flags,
        )
        self.replicas.append(replica)
        return replica

    def kill(self, replica: RunningCoordinator) -> None:
        replica.process.send_signal(signal.SIGKILL)
        replica.process.wait(timeout=30)

    def token(self, role: str | Role = "user", subject: str = "alice", vo: str = "vo1") -> str:
        return self.replicas[0].token(role=role, subject=subject, vo=vo)


@pytest.fixture
def deploy(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    postgres_cluster: PostgresCluster,
    s3_server: S3Server,
) -> Iterator[Callable[..., Deployment]]:
    """``deploy(replicas=3, proxy=True, s3=None, env=None, **serve_flags)``: a deployment
    of this test's own (its own database and bucket prefix). ``s3``: another S3 server
    than the session's (a test that stops it); ``env``: more environment for the replicas."""
    made: list[Deployment] = []

    def make(
        replicas: int = 3,
        proxy: bool = True,
        s3: S3Server | None = None,
        env: dict[str, str] | None = None,
        database_url_override: str | None = None,
        **flags: Any,
    ) -> Deployment:
        server = s3 or s3_server
        key_dir = tmp_path / "key"
        key_dir.mkdir(exist_ok=True)
        load_or_create_signing_key(key_dir)
        name = f"{request.node.name}-{len(made)}"
        deployment = Deployment(
            database_url=database_url_override or DATABASES.postgres_url(str(tmp_path / name)),
            store=server.url(name),
            env={**server.env(), **(env or {})},
            key_dir=key_dir,
            base_dir=tmp_path / name,
            flags=flags,
        )
        made.append(deployment)
        for _ in range(replicas):
            deployment.start_replica()
        if proxy:
            backends = [replica.url.removeprefix("http://") for replica in deployment.replicas]
            deployment.proxy = Haproxy(backends, tmp_path / f"{name}-haproxy.log").start()
        return deployment

    yield make
    crashed = []
    for deployment in made:
        if deployment.proxy is not None:
            deployment.proxy.stop()
        for replica in deployment.replicas:
            if replica.process.poll() is not None:
                continue
            # Every replica is stopped even when one logged a crash; then the test fails.
            try:
                _stop_and_check(replica)
            except AssertionError as exc:
                crashed.append(str(exc))
    assert not crashed, "\n".join(crashed)
