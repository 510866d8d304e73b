"""The wrapper's sandbox transport over the pilot's client.

The client retries a transfer on its own, for ``max_retry_s`` (the pilot's give-up time) or
until the pilot's exit deadline; when it still cannot reach the coordinator the wrapper is
told so (``TransportUnreachable``) and keeps the output archive, which the pilot sends
before the job's final report, or keeps in its spool with that report (``pilot.spool``).
"""

from __future__ import annotations

from pathlib import Path

from pilot.client import CoordinatorClient
from pilot.errors import CoordinatorUnreachable
from wrapper.errors import TransportUnreachable


class SandboxTransport:
    """``download_sandbox`` / ``upload_sandbox`` for ``wrapper.job.JobRun``."""

    def __init__(self, client: CoordinatorClient) -> None:
        self._client = client

    def download_sandbox(self, sha256: str, dest: Path) -> None:
        try:
            self._client.download_sandbox(sha256, dest)
        except CoordinatorUnreachable as exc:
            raise TransportUnreachable(str(exc)) from exc

    def upload_sandbox(self, path: Path, sha256: str) -> None:
        try:
            self._client.upload_sandbox(path, sha256)
        except CoordinatorUnreachable as exc:
            raise TransportUnreachable(str(exc)) from exc
