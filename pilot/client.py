"""``CoordinatorClient``: every HTTP call to the coordinator, over an injected session.

Every transport failure (``TRANSPORT_ERRORS``: a refused or reset connection, a timeout, a
reply cut while its body is read, an unreadable JSON body), 429 and 5xx answers are retried
with exponential backoff and full jitter until ``max_retry_s`` has passed; then
``CoordinatorUnreachable``. A reply's body is read and decoded inside the retry loop, so a
cut reply is retried like a refused connection; requests that change something carry the
pilot's ``request_id`` and the coordinator answers a retry of an applied one as the first.
Other error answers become ``CoordinatorRejected`` carrying the server's
``{code, message, details}``. ``exit_within`` bounds every request from then on (the pilot is
leaving its slot). The clock and sleep are injected so the retry policy is testable without
waiting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
import random
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter

from pilot.errors import (
    CoordinatorRejected,
    CoordinatorUnreachable,
    PilotExiting,
    PilotOutdated,
    SandboxChecksumMismatch,
)
from protocol import (
    API_PREFIX,
    PILOT_HEADER,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    SHA256_HEADER,
    ErrorCode,
    Heartbeat,
    HeartbeatReply,
    JobInfo,
    JobStatusUpdate,
    LogAppendReply,
    MatchReply,
    MatchRequest,
    PilotRegistration,
    PilotStateUpdate,
    RegistrationReply,
)

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
)
"""Every way an exchange can fail on the wire, a reply cut while its body is read included
(``ChunkedEncodingError``, urllib3's ``ProtocolError``): all retried."""
MIN_ATTEMPT_TIMEOUT_S = 0.5
T = TypeVar("T")
CHUNK_BYTES = 1024 * 1024
GIVE_UP_POLL_S = 0.2
LOG_CHUNK_BYTES = 256 * 1024
"""Pilot log upload chunk: well under any sane coordinator chunk limit."""
SEND_BLOCK_BYTES = 1024 * 1024
"""A file body (a sandbox upload) is sent in pieces this big: urllib3's 16 KiB made a 512 MB
upload cost the node 2.5 times the CPU (bench/sandboxes.py)."""
_SSL_REASON = re.compile(r"certificate verify failed: (.+?)\s*\(_ssl")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_retry_s: float = 300.0
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    give_up: Optional[Callable[[], bool]] = None
    """Checked while waiting to retry: True stops retrying at once (the pilot is stopping)."""

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter, so a crowd of pilots does not retry in step."""
        ceiling = min(self.max_delay_s, self.first_delay_s * (2**attempt))
        return rng.uniform(ceiling / 2, ceiling)


class _LargeBlockAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blocksize", SEND_BLOCK_BYTES)
        super().init_poolmanager(*args, **kwargs)


class BearerToken(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on every request of the session it is the ``auth`` of.

    An auth, not a header set by hand: requests gives a request made without an auth the
    credentials ``~/.netrc`` (``NETRC``) holds for its host, over any Authorization header,
    so a worker node with a netrc entry for the coordinator's host (for an HTTP proxy or a
    data server there) would send those instead of the token and be refused. With the
    session's auth set, requests does not look netrc up at all.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerToken(...)"  # never the token itself, in a log or a traceback


class _EnvironmentOnceSession(requests.Session):
    """A ``requests.Session`` that reads the environment's proxies, CA bundle and netrc
    once per origin (scheme, host and port) instead of at every request.

    requests looks them up again for each request (``trust_env``): going through every
    environment variable for the proxy settings took 0.5 ms of a pilot's CPU per request
    on the bench node, two requests per job (bench/throughput.py). The answers are the
    same ones requests gives, for the environment as it was at the origin's first request:
    a pilot does not change its environment while it runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self._settings: dict[tuple[Any, ...], Any] = {}
        self._netrc: dict[str, Any] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        given = tuple(sorted((proxies or {}).items()))
        key = (_origin(url), given, stream, verify, cert)
        settings = self._settings.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._settings[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if self.trust_env and not request.auth and not self.auth:
            origin = _origin(request.url)
            if origin not in self._netrc:
                self._netrc[origin] = requests.utils.get_netrc_auth(request.url)
            # What requests would find in ~/.netrc, or an auth that changes nothing, so
            # that it does not look again.
            request.auth = self._netrc[origin] or _unchanged
        return super().prepare_request(request)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: Any) -> None:
        """A redirect: requests drops the Authorization header when the host changes (the
        token never leaves the coordinator) and applies netrc for the new URL, even on
        the same host and over the session's auth; there, the token is put back."""
        super().rebuild_auth(prepared_request, response)
        same_host = not self.should_strip_auth(response.request.url, prepared_request.url)
        if isinstance(self.auth, BearerToken) and same_host:
            prepared_request.prepare_auth(self.auth)


def _unchanged(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _origin(url: Any) -> str:
    parts = urllib.parse.urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}".lower()


def _new_session() -> requests.Session:
    session = _EnvironmentOnceSession()
    for scheme in ("http://", "https://"):
        session.mount(scheme, _LargeBlockAdapter())
    return session


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
        self._session = session or _new_session()
        if token:
            self._session.auth = BearerToken(token)
        self._session.headers[PROTOCOL_HEADER] = str(PROTOCOL_VERSION)
        self._verify = verify
        self._timeout_s = timeout_s
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._deadline_s: Optional[float] = None

    def close(self) -> None:
        self._session.close()

    # -- the one place that talks HTTP -------------------------------------------------

    def request(
        self, method: str, path: str, *, retry: Optional[RetryPolicy] = None, **kwargs: Any
    ) -> requests.Response:
        """Send one request, retrying what is worth retrying; raise on error answers.

        ``retry`` replaces the client's policy for this call (e.g. a heartbeat is worth
        less retrying than a final report).
        """
        return self.exchange(method, path, lambda response: response, retry=retry, **kwargs)

    def exchange(
        self,
        method: str,
        path: str,
        read: Callable[[requests.Response], T],
        *,
        retry: Optional[RetryPolicy] = None,
        **kwargs: Any,
    ) -> T:
        """``request``, with ``read(response)`` (reading and decoding the body) inside the
        retry loop: a body cut or garbled on the way is retried like a failed connection."""
        url = f"{self.base_url}{API_PREFIX}{path}" if path.startswith("/") else path
        policy = retry or self._retry
        kwargs.setdefault("verify", self._verify)
        started = self._clock()
        attempt = 0
        while True:
            body = kwargs.get("data")
            if body is not None and hasattr(body, "seek"):
                body.seek(0)  # a retried upload must send the file from its start again
            kwargs["timeout"] = self._attempt_timeout_s(method, url)
            try:
                response = self._session.request(method, url, **kwargs)
                if response.status_code not in RETRY_STATUSES:
                    _raise_for_error(response)
                    with response:
                        return read(response)
                failure = f"HTTP {response.status_code}"
                retry_after = _retry_after_s(response)
            except requests.exceptions.SSLError as exc:
                _raise_if_untrusted(exc, url)
                failure, retry_after = failure_reason(exc), None
            except (
                requests.exceptions.InvalidURL,
                requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema,
            ) as exc:
                raise CoordinatorUnreachable(
                    f"{url} is not a usable URL: {exc}", url=url, reason="not a usable URL"
                ) from exc
            except TRANSPORT_ERRORS as exc:
                failure, retry_after = failure_reason(exc), None
            except requests.exceptions.JSONDecodeError as exc:  # a 2xx body cut on the way
                failure, retry_after = f"unreadable reply: {exc}", None
            delay = retry_after if retry_after is not None else policy.delay_s(attempt, self._rng)
            self._wait(policy, delay, started, method, url, failure)
            attempt += 1

    def exit_within(self, seconds: float) -> None:
        """From now on every request ends within ``seconds``, answered or not (an earlier
        deadline stays): the pilot is leaving its batch slot. Any thread may call it."""
        deadline_s = self._clock() + seconds
        if self._deadline_s is None or deadline_s < self._deadline_s:
            self._deadline_s = deadline_s

    def _attempt_timeout_s(self, method: str, url: str) -> float:
        if self._deadline_s is None:
            return self._timeout_s
        left_s = self._deadline_s - self._clock()
        if left_s <= 0:
            raise PilotExiting(
                f"{method} {url}: not sent, the pilot is exiting",
                url=url,
                reason="not sent, the pilot is exiting",
            )
        return max(MIN_ATTEMPT_TIMEOUT_S, min(self._timeout_s, left_s))

    def _wait(
        self,
        policy: RetryPolicy,
        delay_s: float,
        started: float,
        method: str,
        url: str,
        failure: str,
    ) -> None:
        elapsed = self._clock() - started
        if self._deadline_s is not None and self._clock() + delay_s > self._deadline_s:
            raise PilotExiting(
                f"{method} {url}: given up, the pilot is exiting ({failure})",
                url=url,
                reason=failure,
            )
        if elapsed + delay_s > policy.max_retry_s:
            raise CoordinatorUnreachable(
                f"{method} {url} failed for {elapsed:.0f} s, last error: {failure}",
                url=url,
                reason=failure,
            )
        logger.warning("%s %s: %s; retrying in %.1f s", method, url, failure, delay_s)
        if policy.give_up is None:
            self._sleep(delay_s)
            return
        wake_at = self._clock() + delay_s
        while not policy.give_up():
            left_s = wake_at - self._clock()
            if left_s <= 0:
                return
            self._sleep(min(left_s, GIVE_UP_POLL_S))
        raise CoordinatorUnreachable(
            f"{method} {url}: retrying given up, last error: {failure}", url=url, reason=failure
        )

    def _json(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        retry: Optional[RetryPolicy] = None,
        **kwargs: Any,
    ) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self.exchange(method, path, json_body, retry=retry, **kwargs)

    # -- pilot calls -------------------------------------------------------------------

    def register(
        self, registration: PilotRegistration, *, retry: Optional[RetryPolicy] = None
    ) -> RegistrationReply:
        data = self._json("POST", "/pilots", registration.to_dict(), retry=retry)
        return RegistrationReply.from_dict(data)

    def match(
        self, pilot_id: str, request: MatchRequest, *, retry: Optional[RetryPolicy] = None
    ) -> MatchReply:
        data = self._json("POST", f"/pilots/{pilot_id}/match", request.to_dict(), retry=retry)
        return MatchReply.from_dict(data)

    def update_status(
        self,
        pilot_id: str,
        job_id: int,
        update: JobStatusUpdate,
        *,
        retry: Optional[RetryPolicy] = None,
    ) -> JobInfo:
        data = self._json(
            "POST",
            f"/jobs/{job_id}/status",
            update.to_dict(),
            retry=retry,
            headers={PILOT_HEADER: pilot_id},
        )
        return JobInfo.from_dict(data)

    def heartbeat(
        self,
        pilot_id: str,
        job_id: int,
        beat: Heartbeat,
        *,
        retry: Optional[RetryPolicy] = None,
    ) -> HeartbeatReply:
        data = self._json(
            "POST",
            f"/jobs/{job_id}/heartbeat",
            beat.to_dict(),
            retry=retry,
            headers={PILOT_HEADER: pilot_id},
        )
        return HeartbeatReply.from_dict(data)

    def update_pilot_state(
        self, pilot_id: str, update: PilotStateUpdate, *, retry: Optional[RetryPolicy] = None
    ) -> None:
        self.request("POST", f"/pilots/{pilot_id}/state", retry=retry, json=update.to_dict())

    def upload_pilot_log(
        self, pilot_id: str, path: Path, *, retry: Optional[RetryPolicy] = None
    ) -> int:
        """Append the pilot's log file to its copy at the coordinator; bytes stored in all.

        Sent in chunks by offset, so a retried chunk is never stored twice; when the
        coordinator already holds more (an earlier upload), it says where to go on.
        """
        offset = 0
        size = path.stat().st_size
        with open(path, "rb") as log:
            while offset < size:
                log.seek(offset)
                chunk = log.read(LOG_CHUNK_BYTES)
                try:
                    reply = self.exchange(
                        "PUT",
                        f"/pilots/{pilot_id}/log",
                        json_body,
                        retry=retry,
                        params={"offset": offset},
                        data=chunk,
                        headers={"Content-Type": "application/octet-stream"},
                    )
                except CoordinatorRejected as exc:
                    expected = exc.details.get("expected_offset")
                    if exc.code != ErrorCode.LOG_GAP or not isinstance(expected, int):
                        raise
                    offset = min(expected, size)
                    continue
                next_offset = LogAppendReply.from_dict(reply).next_offset
                if next_offset <= offset:
                    break  # the coordinator took nothing: do not loop on it
                offset = next_offset
        return offset

    def append_job_log(
        self,
        pilot_id: str,
        job_id: int,
        stream: str,
        offset: int,
        data: bytes,
        *,
        retry: Optional[RetryPolicy] = None,
    ) -> int:
        """Append bytes of a job's live log at ``offset``; the coordinator's next offset."""
        reply = self.exchange(
            "PUT",
            f"/jobs/{job_id}/logs/{stream}",
            json_body,
            retry=retry,
            params={"offset": offset},
            data=data,
            headers={PILOT_HEADER: pilot_id, "Content-Type": "application/octet-stream"},
        )
        return LogAppendReply.from_dict(reply).next_offset

    # -- sandboxes (the wrapper's SandboxTransport) -----------------------------------

    def upload_sandbox(
        self, path: Path, sha256: str, *, retry: Optional[RetryPolicy] = None
    ) -> None:
        with open(path, "rb") as stream:
            self.request(
                "POST",
                "/sandboxes",
                retry=retry,
                data=stream,
                headers={SHA256_HEADER: sha256, "Content-Type": "application/octet-stream"},
            )

    def download_sandbox(self, sha256: str, dest: Path) -> None:
        """Stream the archive to ``dest`` and refuse it unless its bytes hash to ``sha256``.

        A download cut half-way is retried from the start (the file is rewritten)."""

        def save(response: requests.Response) -> str:
            with open(dest, "wb") as out:
                return _save_hashing(response.iter_content(CHUNK_BYTES), out)

        actual = self.exchange("GET", f"/sandboxes/{sha256}", save, stream=True)
        if actual != sha256.lower():
            dest.unlink()
            raise SandboxChecksumMismatch(sha256, actual)


def _save_hashing(chunks: Iterator[bytes], out: BinaryIO) -> str:
    """Write ``chunks`` to ``out`` and return their sha256; each chunk is hashed and written
    by a second thread while the next one is received (hashlib and file writes release the
    GIL), one chunk in flight at most, so memory stays at a few ``CHUNK_BYTES``."""
    digest = hashlib.sha256()

    def consume(chunk: bytes) -> None:
        digest.update(chunk)
        out.write(chunk)

    with ThreadPoolExecutor(1, thread_name_prefix="sandbox-hash") as hashing:
        pending: Optional[Future[None]] = None
        try:
            for chunk in chunks:
                if pending is not None:
                    pending.result()
                pending = hashing.submit(consume, chunk)
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                wait([pending])  # a failed read: the caller closes ``out`` after this write
    return digest.hexdigest()


def json_body(response: requests.Response) -> Any:
    """The reply's JSON; ValueError (retried) when it does not parse."""
    return response.json()


def _raise_if_untrusted(exc: requests.exceptions.SSLError, url: str) -> None:
    """A certificate the client does not trust will not become trusted by retrying:
    fail at once, saying what to configure. Other TLS errors (a reset handshake) retry."""
    text = str(exc)
    if "certificate verify failed" not in text.lower():
        return
    reason = _SSL_REASON.search(text)
    why = reason.group(1) if reason else "certificate verify failed"
    raise CoordinatorUnreachable(
        f"cannot verify the TLS certificate of {url}: {why}. Give the coordinator's CA "
        "certificate with --ca-bundle or GRIDPILOT_CA_BUNDLE (pilot config: ca_bundle)",
        url=url,
        reason=f"its TLS certificate cannot be verified ({why}); give the coordinator's CA "
        "certificate with --ca-bundle or GRIDPILOT_CA_BUNDLE",
    ) from exc


def failure_reason(exc: BaseException) -> str:
    """A failed connection in a few words ("connection refused", "unknown host name"),
    found in the chain of exceptions requests and urllib3 wrap around the socket's."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "no connection within the timeout"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no answer within the timeout"
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "unknown host name"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, (socket.timeout, TimeoutError)):
            return "no answer within the timeout"
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror).lower()
        linked = [*current.args, getattr(current, "reason", None)]
        linked += [current.__cause__, current.__context__]
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return f"{type(exc).__name__}: {exc}"


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
    code = str(body.get("code", ErrorCode.HTTP_ERROR.value))
    message = str(body.get("message", response.reason or "error"))
    details = body.get("details") or {}
    error_cls = PilotOutdated if response.status_code == 426 else CoordinatorRejected
    raise error_cls(response.status_code, code, message, dict(details))
