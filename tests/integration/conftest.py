"""Drive gridpilot as a user does: the ``gridpilot`` CLI and real pilot processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from client.demo import TUTORIAL_JDL
from protocol import Role

__all__ = ["TUTORIAL_JDL", "Pilot", "User"]


class User:
    """Runs ``gridpilot`` commands with one user's token, like a shell session would."""

    def __init__(self, url: str, token: str, cwd: Path) -> None:
        self.env = {**os.environ, "GRIDPILOT_URL": url, "GRIDPILOT_TOKEN": token}
        self.cwd = cwd

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "client", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            command = " ".join(args)
            raise AssertionError(
                f"gridpilot {command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def submit(self, jdl_text: str, name: str = "job.jdl") -> list[int]:
        path = self.cwd / name
        path.write_text(jdl_text)
        out = self.run("submit", "--json", str(path)).stdout
        return [json.loads(line)["job_id"] for line in out.splitlines()]

    def status(self, job_id: int) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("status", "--json", str(job_id)).stdout)[0]
        return data

    def wait_for(self, job_id: int, statuses: set[str], timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.status(job_id)
            if info["status"] in statuses:
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {info['status']} after {timeout_s} s")
            time.sleep(0.3)


class Pilot:
    """A real ``gridpilot pilot`` process against the test coordinator."""

    def __init__(self, url: str, token: str, root: Path) -> None:
        self.root = root
        self.token_file = root / "pilot.token"
        self.token_file.write_text(token)
        self.workdir = root / "work"
        self.url = url

    def command(self, idle_timeout_s: float = 2.0, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "pilot", "pilot",
            "--url", self.url,
            "--token-file", str(self.token_file),
            "--workdir", str(self.workdir),
            "--idle-timeout-s", str(idle_timeout_s),
            "--poll-interval-s", "0.5",
            *extra,
        ]  # fmt: skip

    def run(
        self,
        idle_timeout_s: float = 2.0,
        timeout_s: float = 120.0,
        extra: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run until the pilot exits by itself (idle timeout).

        ``extra`` are more command-line options; ``env`` more environment variables.
        """
        return subprocess.run(
            self.command(idle_timeout_s, *extra),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, **(env or {})},
        )

    def start(
        self,
        idle_timeout_s: float = 2.0,
        extra: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(idle_timeout_s, *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def write_config(self, text: str) -> Path:
        """A pilot YAML config file next to the work dir, for ``--config``."""
        path = self.root / "pilot.yaml"
        path.write_text(text)
        return path

    def log(self) -> str:
        """The pilot's own log file, ``<workdir>/pilot.log``."""
        return (self.workdir / "pilot.log").read_text(errors="replace")


@pytest.fixture
def coordinator(start_coordinator: Callable[..., Any]) -> Any:
    """A coordinator whose pilots heartbeat every second, so kills land within a second."""
    return start_coordinator(heartbeat_interval_s=1, match_retry_after_s=0.5)


@pytest.fixture
def make_user(coordinator: Any, tmp_path: Path) -> Callable[..., User]:
    def make(subject: str = "alice", vo: str = "vo1", role: str = "user") -> User:
        home = tmp_path / f"{subject}-{role}"
        home.mkdir(exist_ok=True)
        return User(coordinator.url, coordinator.token(role=role, subject=subject, vo=vo), home)

    return make


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def pilot(coordinator: Any, tmp_path: Path) -> Pilot:
    root = tmp_path / "pilot"
    root.mkdir()
    return Pilot(
        coordinator.url, coordinator.token(role=Role.PILOT.value, subject="factory", vo="vo1"), root
    )
