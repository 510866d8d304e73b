"""``UserClient``: the coordinator's API as a user calls it, with typed answers.

Every call goes through the pilot's ``CoordinatorClient`` (one HTTP session, retries on
429 and 5xx), with a user's patience: a connection not taken within the connect timeout
fails at once, and everything retried stops after ``USER_RETRY_S``. Its failures become
the client's errors (``client.errors``), said in words; the coordinator's code, HTTP
status and details stay on the error for ``--json`` and ``-v``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import requests

from client.connection import Connection
from client.errors import NotAuthorised, Refused, Unreachable
from pilot.client import CoordinatorClient, RetryPolicy
from pilot.errors import CoordinatorRejected, CoordinatorUnreachable
from protocol import (
    LOG_COMPLETE_HEADER,
    LOG_NEXT_OFFSET_HEADER,
    LOG_SIZE_HEADER,
    HistoryEntry,
    IssuedTokenReply,
    JobExplanation,
    JobHistory,
    JobInfo,
    JobList,
    Message,
    PilotExplanation,
    PilotInfo,
    PilotList,
    RevocationInfo,
    RevokedTokens,
    RevokeRequest,
    SubmitReply,
    SubmitRequest,
    TokenExchangeRequest,
    WhoAmI,
)

USER_RETRY_S = 2.0
MAX_LISTED = 10_000
"""The most jobs or pilots one list request may ask for."""

T = TypeVar("T")
M = TypeVar("M", bound=Message)
P = TypeVar("P", JobList, JobHistory, PilotList, RevokedTokens)


@dataclasses.dataclass(frozen=True)
class LogPiece:
    """Bytes of a log from an offset, where the next read starts, and whether it is over."""

    data: bytes
    next_offset: int
    size_bytes: int
    complete: bool


class UserClient:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.url = connection.url
        self._http = CoordinatorClient(
            connection.url,
            connection.token,
            verify=connection.verify,
            timeout_s=connection.timeout_s,
            retry=RetryPolicy(max_retry_s=USER_RETRY_S, first_delay_s=0.25, max_delay_s=1.0),
        )
        self._timeout = (connection.connect_timeout_s, connection.timeout_s)

    def close(self) -> None:
        self._http.close()

    # -- the one place that turns transport failures into client errors ---------------

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except CoordinatorUnreachable as exc:
            raise Unreachable(
                f"cannot reach the coordinator at {self.url}: {exc.reason}",
                details={"url": self.url, "reason": exc.reason},
            ) from exc
        except CoordinatorRejected as exc:
            details = {"code": exc.code, "http_status": exc.status, **exc.details}
            if exc.status in (401, 403):
                raise NotAuthorised(_authorisation_message(exc), details=details) from exc
            raise Refused(exc.message, code=exc.code, status=exc.status, details=details) from exc
        except (requests.RequestException, ValueError) as exc:
            # A proxy's HTML page, a truncated body: not an answer of a coordinator.
            raise Unreachable(
                f"{self.url} did not answer as a gridpilot coordinator: {exc}",
                details={"url": self.url},
            ) from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return self._guard(lambda: self._http.request(method, path, **kwargs))

    def _message(self, kind: type[M], method: str, path: str, **kwargs: Any) -> M:
        response = self._request(method, path, **kwargs)
        return self._guard(lambda: kind.from_dict(response.json()))

    # -- jobs --------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> SubmitReply:
        return self._message(SubmitReply, "POST", "/jobs", json=request.to_dict())

    def job(self, job_id: int) -> JobInfo:
        return self._message(JobInfo, "GET", f"/jobs/{job_id}")

    def jobs(self, job_ids: list[int]) -> list[JobInfo]:
        """The jobs of ``job_ids`` the caller may see (others are left out)."""
        found: list[JobInfo] = []
        for start in range(0, len(job_ids), MAX_LISTED):
            chunk = ",".join(str(job_id) for job_id in job_ids[start : start + MAX_LISTED])
            params = {"ids": chunk, "limit": MAX_LISTED}
            found += self._message(JobList, "GET", "/jobs", params=params).jobs
        return found

    def list_jobs(
        self,
        *,
        statuses: Optional[str] = None,
        owner: Optional[str] = None,
        site: Optional[str] = None,
        group: Optional[str] = None,
        limit: int = 100,
    ) -> JobList:
        """Up to ``limit`` jobs, newest first (as many pages as that takes), and the counts."""
        params: dict[str, Any] = {"status": statuses, "owner": owner, "site": site}
        params = {key: value for key, value in params.items() if value}
        if group:
            params["job_group"] = group
        pages = self._pages(JobList, "/jobs", params, limit)
        found = [info for page in pages for info in page.jobs][:limit]
        return JobList(jobs=found, counts=pages[0].counts, next_cursor=pages[-1].next_cursor)

    def history(self, job_id: int) -> list[HistoryEntry]:
        pages = self._pages(JobHistory, f"/jobs/{job_id}/history", {}, None)
        return [entry for page in pages for entry in page.history]

    def _pages(
        self, kind: type[P], path: str, params: dict[str, Any], limit: Optional[int]
    ) -> list[P]:
        """Pages of a list until ``limit`` items (None: all), following ``next_cursor``."""
        pages: list[P] = []
        cursor: Optional[str] = None
        wanted = limit
        while True:
            size = MAX_LISTED if wanted is None else max(1, min(wanted, MAX_LISTED))
            query = {**params, "limit": size, **({"cursor": cursor} if cursor else {})}
            page = self._message(kind, "GET", path, params=query)
            pages.append(page)
            cursor = page.next_cursor
            if wanted is not None:
                wanted -= len(_items(page))
            if not cursor or (wanted is not None and wanted <= 0):
                return pages

    def kill(self, job_id: int) -> JobInfo:
        return self._message(JobInfo, "POST", f"/jobs/{job_id}/kill")

    def delete(self, job_id: int) -> JobInfo:
        return self._message(JobInfo, "DELETE", f"/jobs/{job_id}")

    def reschedule(self, job_id: int, *, reset: bool = False) -> JobInfo:
        params = {"reset": "true"} if reset else {}
        return self._message(JobInfo, "POST", f"/jobs/{job_id}/reschedule", params=params)

    def read_log(self, job_id: int, stream: str, offset: int, limit: int) -> LogPiece:
        params = {"offset": offset, "limit": limit}
        response = self._request("GET", f"/jobs/{job_id}/logs/{stream}", params=params)
        return self._guard(lambda: _log_piece(response))

    # -- sandboxes ---------------------------------------------------------------------

    def upload_sandbox(self, path: Path, sha256: str) -> None:
        self._guard(lambda: self._http.upload_sandbox(path, sha256))

    def download_sandbox(self, sha256: str, dest: Path) -> None:
        self._guard(lambda: self._http.download_sandbox(sha256, dest))

    # -- pilots ------------------------------------------------------------------------

    def pilots(self, limit: int = 100) -> list[PilotInfo]:
        pages = self._pages(PilotList, "/pilots", {}, limit)
        return [pilot for page in pages for pilot in page.pilots][:limit]

    def explain_job(self, job_id: int) -> JobExplanation:
        return self._message(JobExplanation, "GET", f"/jobs/{job_id}/explain")

    def explain_pilot(self, pilot_id: str) -> PilotExplanation:
        return self._message(PilotExplanation, "GET", f"/pilots/{pilot_id}/explain")

    def read_pilot_log(self, pilot_id: str, offset: int, limit: int) -> LogPiece:
        params = {"offset": offset, "limit": limit}
        response = self._request("GET", f"/pilots/{pilot_id}/log", params=params)
        return self._guard(lambda: _log_piece(response))

    # -- tokens ------------------------------------------------------------------------

    def whoami(self) -> WhoAmI:
        return self._message(WhoAmI, "GET", "/tokens/whoami")

    def exchange_credential(self, ttl_s: Optional[int] = None) -> IssuedTokenReply:
        body = TokenExchangeRequest(ttl_s=ttl_s).to_dict()
        return self._message(IssuedTokenReply, "POST", "/tokens/exchange", json=body)

    def revoke_token(self, token_id: str, reason: str = "") -> RevocationInfo:
        body = RevokeRequest(token_id=token_id, reason=reason).to_dict()
        return self._message(RevocationInfo, "POST", "/tokens/revoke", json=body)

    def revoked_tokens(self) -> list[RevocationInfo]:
        pages = self._pages(RevokedTokens, "/tokens/revoked", {}, None)
        return [item for page in pages for item in page.revoked]


def _items(page: Any) -> list[Any]:
    for name in ("jobs", "history", "pilots", "revoked"):
        if hasattr(page, name):
            return list(getattr(page, name))
    return []


def _log_piece(response: requests.Response) -> LogPiece:
    headers = response.headers
    size = int(headers.get(LOG_SIZE_HEADER, len(response.content)))
    return LogPiece(
        data=response.content,
        next_offset=int(headers.get(LOG_NEXT_OFFSET_HEADER, size)),
        size_bytes=size,
        complete=headers.get(LOG_COMPLETE_HEADER) == "true",
    )


def _authorisation_message(exc: CoordinatorRejected) -> str:
    if exc.status == 403:
        return f"not allowed: {exc.message}"
    return f"the coordinator refused the token: {exc.message}"
