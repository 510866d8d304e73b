"""haproxy (Debian's package, installed by tests/setup-system.sh) in front of coordinator
replicas, running the shipped ``packaging/scaleout/haproxy.cfg`` with its addresses in the
environment, in the foreground, as a child of the test."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import requests

from tests.services.ports import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CONFIG = REPO_ROOT / "packaging" / "scaleout" / "haproxy.cfg"
REPLICA_SLOTS = 3
START_TIMEOUT_S = 20.0


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if not found:
        raise RuntimeError("no haproxy: run tests/setup-system.sh as root (Debian package haproxy)")
    return found


class Haproxy:
    def __init__(self, backends: Sequence[str], log_path: Path) -> None:
        if not 1 <= len(backends) <= REPLICA_SLOTS:
            raise ValueError(f"the shipped config has {REPLICA_SLOTS} replica slots")
        self.port = free_port()
        # Unused slots point at the first replica again: a second check of one server.
        slots = list(backends) + [backends[0]] * (REPLICA_SLOTS - len(backends))
        self.env = {"GRIDPILOT_BIND": f"127.0.0.1:{self.port}"}
        self.env.update({f"GRIDPILOT_REPLICA{i + 1}": slot for i, slot in enumerate(slots)})
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check_config(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [haproxy_binary(), "-c", "-f", str(CONFIG)],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self) -> Haproxy:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [haproxy_binary(), "-db", "-f", str(CONFIG)],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{self.log_path.read_text()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy not serving:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def running_haproxy(backends: Sequence[str], log_path: Path) -> Iterator[Haproxy]:
    proxy = Haproxy(backends, log_path)
    try:
        yield proxy.start()
    finally:
        proxy.stop()
