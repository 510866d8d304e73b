"""``CoordinatorClient``: every HTTP call to the coordinator, over an injected session.

Connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff and
full jitter until ``max_retry_s`` has passed; then ``CoordinatorUnreachable``. Other error
answers become ``CoordinatorRejected`` carrying the server's ``{code, message, details}``.
The clock and sleep are injected so the retry policy is testable without waiting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import requests

from pilot.errors import CoordinatorRejected, CoordinatorUnreachable, PilotOutdated
from pilot.protocol import (
    API_PREFIX,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    Heartbeat,
    HeartbeatReply,
    HistoryEntry,
    JobInfo,
    JobStatusUpdate,
    MatchReply,
    MatchRequest,
    PilotRegistration,
    RegistrationReply,
    SandboxInfo,
    SubmitReply,
    SubmitRequest,
)

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CHUNK_BYTES = 1024 * 1024
PILOT_HEADER = "X-Gridpilot-Pilot"
SHA_HEADER = "X-Content-Sha256"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_retry_s: float = 300.0
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter, so a crowd of pilots does not retry in step."""
        ceiling = min(self.max_delay_s, self.first_delay_s * (2**attempt))
        return rng.uniform(ceiling / 2, ceiling)


class CoordinatorClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: Optional[requests.Session] = None,
        verify: Any = True,
        timeout_s: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session or requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._session.headers[PROTOCOL_HEADER] = str(PROTOCOL_VERSION)
        self._verify = verify
        self._timeout_s = timeout_s
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    def close(self) -> None:
        self._session.close()

    # -- the one place that talks HTTP -------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request, retrying what is worth retrying; raise on error answers."""
        url = f"{self.base_url}{API_PREFIX}{path}" if path.startswith("/") else path
        kwargs.setdefault("timeout", self._timeout_s)
        kwargs.setdefault("verify", self._verify)
        started = self._clock()
        attempt = 0
        while True:
            body = kwargs.get("data")
            if body is not None and hasattr(body, "seek"):
                body.seek(0)  # a retried upload must send the file from its start again
            try:
                response = self._session.request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    _raise_for_error(response)
                    return response
                failure = f"HTTP {response.status_code}"
                retry_after = _retry_after_s(response)
                if retry_after is not None:
                    self._wait(retry_after, started, method, url, failure)
                    attempt += 1
                    continue
            delay = self._retry.delay_s(attempt, self._rng)
            self._wait(delay, started, method, url, failure)
            attempt += 1

    def _wait(self, delay_s: float, started: float, method: str, url: str, failure: str) -> None:
        elapsed = self._clock() - started
        if elapsed + delay_s > self._retry.max_retry_s:
            raise CoordinatorUnreachable(
                f"{method} {url} failed for {elapsed:.0f} s, last error: {failure}"
            )
        logger.warning("%s %s: %s; retrying in %.1f s", method, url, failure, delay_s)
        self._sleep(delay_s)

    def _json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self.request(method, path, **kwargs).json()

    # -- pilot calls -------------------------------------------------------------------

    def register(self, registration: PilotRegistration) -> RegistrationReply:
        data = self._json("POST", "/pilots", registration.to_dict())
        return RegistrationReply.from_dict(data)

    def match(self, pilot_id: str, request: MatchRequest) -> MatchReply:
        data = self._json("POST", f"/pilots/{pilot_id}/match", request.to_dict())
        return MatchReply.from_dict(data)

    def update_status(self, pilot_id: str, job_id: int, update: JobStatusUpdate) -> JobInfo:
        data = self._json(
            "POST",
            f"/jobs/{job_id}/status",
            update.to_dict(),
            headers={PILOT_HEADER: pilot_id},
        )
        return JobInfo.from_dict(data)

    def heartbeat(self, pilot_id: str, job_id: int, beat: Heartbeat) -> HeartbeatReply:
        data = self._json(
            "POST", f"/jobs/{job_id}/heartbeat", beat.to_dict(), headers={PILOT_HEADER: pilot_id}
        )
        return HeartbeatReply.from_dict(data)

    # -- sandboxes (the wrapper's SandboxTransport) -----------------------------------

    def upload_sandbox(self, path: Path, sha256: str) -> None:
        with open(path, "rb") as stream:
            self.request(
                "POST",
                "/sandboxes",
                data=stream,
                headers={SHA_HEADER: sha256, "Content-Type": "application/octet-stream"},
            )

    def download_sandbox(self, sha256: str, dest: Path) -> None:
        """Stream the archive to ``dest`` and refuse it unless its bytes hash to ``sha256``."""
        response = self.request("GET", f"/sandboxes/{sha256}", stream=True)
        digest = hashlib.sha256()
        with response, open(dest, "wb") as out:
            for chunk in response.iter_content(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            dest.unlink()
            raise CoordinatorRejected(
                200, "checksum_mismatch", f"sandbox {sha256} arrived with another checksum", {}
            )

    # -- user calls --------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> SubmitReply:
        return SubmitReply.from_dict(self._json("POST", "/jobs", request.to_dict()))

    def upload_file_sandbox(self, path: Path, sha256: str) -> SandboxInfo:
        self.upload_sandbox(path, sha256)
        return SandboxInfo(sha256=sha256, size_bytes=path.stat().st_size)

    def job(self, job_id: int) -> JobInfo:
        return JobInfo.from_dict(self._json("GET", f"/jobs/{job_id}"))

    def jobs(self, job_ids: list[int]) -> list[JobInfo]:
        data = self._json("GET", "/jobs", params={"ids": ",".join(str(i) for i in job_ids)})
        return [JobInfo.from_dict(item) for item in data["jobs"]]

    def history(self, job_id: int) -> list[HistoryEntry]:
        data = self._json("GET", f"/jobs/{job_id}/history")
        return [HistoryEntry.from_dict(item) for item in data["history"]]

    def kill(self, job_id: int) -> JobInfo:
        return JobInfo.from_dict(self._json("POST", f"/jobs/{job_id}/kill"))

    def delete(self, job_id: int) -> JobInfo:
        return JobInfo.from_dict(self._json("DELETE", f"/jobs/{job_id}"))


def _retry_after_s(response: requests.Response) -> Optional[float]:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _raise_for_error(response: requests.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body: Mapping[str, Any] = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, Mapping):
        body = {}
    code = str(body.get("code", "http_error"))
    message = str(body.get("message", response.reason or "error"))
    details = body.get("details") or {}
    error_cls = PilotOutdated if response.status_code == 426 else CoordinatorRejected
    raise error_cls(response.status_code, code, message, dict(details))
