"""Plain HTTP calls of a pilot and a user, shared by the lifecycle, log and registry tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

import requests

from tests.conftest import REPO_ROOT, RunningCoordinator

HELLO = {"Executable": "/bin/echo", "Arguments": "hello"}


class FakePilot:
    """A pilot speaking the HTTP API by hand, so a test decides when it goes quiet."""

    def __init__(self, coord: RunningCoordinator, vo: str, subject: str = "factory", **reg: Any):
        self.coord = coord
        self.token = coord.token(role="pilot", subject=subject, vo=vo)
        body = {"hostname": "wn01", "pilot_version": "0.1.0", **reg}
        reply = requests.post(coord.api("/pilots"), json=body, headers=self.headers())
        assert reply.status_code == 201, reply.text
        self.pilot_id: str = reply.json()["pilot_id"]

    def headers(self, **extra: str) -> dict[str, str]:
        return self.coord.headers(self.token, **extra)

    def job_headers(self) -> dict[str, str]:
        return self.headers(**{"X-Gridpilot-Pilot": self.pilot_id})

    def match(self, n: int = 1) -> list[int]:
        reply = requests.post(
            self.coord.api(f"/pilots/{self.pilot_id}/match"),
            json={"n": n, "cores_free": n},
            headers=self.headers(),
        )
        assert reply.status_code == 200, reply.text
        return [job["job_id"] for job in reply.json()["jobs"]]

    def report(self, job_id: int, status: str, **update: Any) -> requests.Response:
        return requests.post(
            self.coord.api(f"/jobs/{job_id}/status"),
            json={"status": status, **update},
            headers=self.job_headers(),
        )

    def heartbeat(self, job_id: int) -> requests.Response:
        return requests.post(
            self.coord.api(f"/jobs/{job_id}/heartbeat"),
            json={"cpu_s": 1.0},
            headers=self.job_headers(),
        )

    def append_log(self, job_id: int, data: bytes, offset: int, stream: str = "stdout") -> Any:
        return requests.put(
            self.coord.api(f"/jobs/{job_id}/logs/{stream}"),
            params={"offset": offset},
            data=data,
            headers={**self.job_headers(), "Content-Type": "application/octet-stream"},
        )


class User:
    def __init__(
        self, coord: RunningCoordinator, vo: str, subject: str = "alice", role: str = "user"
    ):
        self.coord = coord
        self.token = coord.token(role=role, subject=subject, vo=vo)

    def headers(self) -> dict[str, str]:
        return self.coord.headers(self.token)

    def submit(
        self, description: Any = None, *, input_sandboxes: Any = (), **attributes: Any
    ) -> list[int]:
        text = json.dumps({**(description or HELLO), **attributes})
        body = {"description": text, "format": "json", "input_sandboxes": list(input_sandboxes)}
        reply = requests.post(self.coord.api("/jobs"), json=body, headers=self.headers())
        assert reply.status_code == 201, reply.text
        job_ids: list[int] = reply.json()["job_ids"]
        return job_ids

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(self.coord.api(path), params=params, headers=self.headers())

    def post(self, path: str, **params: Any) -> requests.Response:
        return requests.post(self.coord.api(path), params=params, headers=self.headers())

    def job(self, job_id: int) -> dict[str, Any]:
        reply = self.get(f"/jobs/{job_id}")
        assert reply.status_code == 200, reply.text
        info: dict[str, Any] = reply.json()
        return info

    def history(self, job_id: int) -> list[tuple[str, str, str]]:
        """(status, minor status, source) of each entry, oldest first."""
        reply = self.get(f"/jobs/{job_id}/history")
        assert reply.status_code == 200, reply.text
        return [(e["status"], e["minor_status"], e["source"]) for e in reply.json()["history"]]


def wait_for(predicate: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(0.05)


def gridpilot(
    coord: RunningCoordinator, token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run the ``gridpilot`` command as its own process against ``coord``."""
    env = {**os.environ, "GRIDPILOT_URL": coord.url, "GRIDPILOT_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
