"""Large sandbox uploads read straight from the socket, in a worker thread.

Through uvicorn a request body arrives as ASGI messages: uvicorn reads at most 256 KiB per
event-loop turn, copies it into the request's buffer, pauses the socket past 64 KiB and
resumes it at each ``receive``, and the endpoint gathers the messages into batches for a
worker thread. For a 512 MB upload that was some 2,500 loop turns, 4,000 ``epoll_ctl``
calls and three copies of every byte in Python, about 2 CPU s/GB on the coordinator
(docs/benchmarks.md, "Hot path: sandboxes"). ``SocketUploads`` serves
``POST /api/v1/sandboxes`` with a declared length of at least ``MIN_BYTES`` itself:

- FastAPI's checks first, the same functions (the token, the digest header, the size
  limit), answered the usual way when they fail;
- then it pauses uvicorn's reading of the connection, takes the body bytes uvicorn holds
  already, and hands a duplicate of the socket to a worker thread that reads the rest with
  ``recv_into`` into two reused 256 KiB buffers, hashing and writing one while it fills the
  other (``SandboxFiles.receive_blocking``): no event-loop turn, no Python copy per block;
- the answer is the route's (201 or 200, ``SandboxInfo``; errors as ``{code, message,
  details}``) with ``Connection: close``: uvicorn's parser never saw the body, so this
  connection cannot carry another request. Pilots open a new one (on 127.0.0.1 about 0.1 ms;
  the lane is for bodies of a megabyte and more).

Anything else goes to FastAPI's route: TLS (the bytes are encrypted on the socket), a body
without Content-Length or over the limit, a cookie (the portal's sessions), another
server than uvicorn with httptools, and uploads beyond ``MAX_CONCURRENT`` at once, so slow
uploads never hold more than that many threads.

The lane reads private attributes of uvicorn's httptools request cycle (``send.__self__``):
``CYCLE_NEEDS``, the transport's and the flow control's methods. They are there, with the
meaning the lane gives them, in uvicorn 0.27.0 (the oldest ``pyproject.toml`` allows),
0.30.0 and 0.34.0 (read in their sources) and 0.55.0 (the one the tests run on):
``CHECKED_UVICORN_VERSIONS``. A uvicorn that renamed or dropped one must not cost uploads:
at the first upload it could serve, the lane looks for all of them on the cycle; whatever is
missing is said once, in a warning naming uvicorn's version, and from then on every upload
goes through FastAPI's route (``tests/coordinator/test_socket_upload.py`` runs a coordinator
on uvicorn's own module with one attribute renamed).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import socket
import threading
from typing import Any, Optional

import msgspec
from anyio import CapacityLimiter, get_cancelled_exc_class, to_thread
from starlette.datastructures import Address, Headers
from starlette.types import Receive, Scope, Send

from coordinator.api.deps import AppContext, authenticate
from coordinator.api.failures import error_answer
from coordinator.api.sandboxes import check_upload
from coordinator.errors import BadRequest
from coordinator.logic import sandboxes
from protocol import API_PREFIX, SandboxInfo

logger = logging.getLogger(__name__)

PATH = f"{API_PREFIX}/sandboxes"
MIN_BYTES = 1024 * 1024
"""Smaller bodies go through FastAPI and keep their connection open."""
MAX_CONCURRENT = 8
"""Uploads read by this lane at once; more wait their turn in FastAPI's route."""
IDLE_S = 60.0
"""Longest silence of a client mid-body before the upload counts as interrupted."""
POLL_S = 1.0
"""How often a reading thread looks up from the socket to see whether to stop."""
_SKIPS = (b"transfer-encoding", b"cookie")
HTTPTOOLS_CYCLE_MODULE = "uvicorn.protocols.http.httptools_impl"
CYCLE_NEEDS = (
    "transport",
    "flow",
    "body",
    "keep_alive",
    "disconnected",
    "waiting_for_100_continue",
    "response_started",
)
"""What the lane reads or sets on uvicorn's request cycle (private: checked once)."""
TRANSPORT_NEEDS = ("get_extra_info", "is_closing", "write")
FLOW_NEEDS = ("pause_reading",)
CHECKED_UVICORN_VERSIONS = ("0.27.0", "0.30.0", "0.34.0", "0.55.0")
"""The uvicorn releases whose request cycle was checked to have all the lane reads."""


class ClientGone(BadRequest):
    """The client closed the connection, or went silent, before the body's end."""


class SocketUploads:
    """The lane: ``length(scope, send)`` says whether it serves a request, ``serve`` does."""

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.limit = context.settings.max_sandbox_bytes
        self.busy = 0
        self._limiter: Optional[CapacityLimiter] = None
        self.off: Optional[str] = None
        """Why the lane serves nothing (this uvicorn lacks what it reads), once known."""
        self._checked = False

    def length(self, scope: Scope, send: Send) -> Optional[int]:
        """The declared body length of an upload this lane serves, else None."""
        if scope["method"] != "POST" or scope["path"] != PATH or self.busy >= MAX_CONCURRENT:
            return None
        length: Optional[int] = None
        for name, value in scope["headers"]:
            if name in _SKIPS:
                return None
            if name == b"content-length":
                if not value.isdigit() or length is not None:
                    return None
                length = int(value)
        if length is None or not MIN_BYTES <= length <= self.limit:
            return None
        return length if self._usable(send) and _cycle(send) is not None else None

    def _usable(self, send: Send) -> bool:
        """Whether this server's request cycles have what the lane reads, checked on the
        first httptools cycle seen; if not, the lane goes off (said once) for good."""
        if not self._checked:
            cycle = getattr(send, "__self__", None)
            if type(cycle).__module__ != HTTPTOOLS_CYCLE_MODULE:
                return False  # h11, another server: FastAPI's route, as always (not a fault)
            self._checked = True
            missing = missing_parts(cycle)
            if missing:
                self.off = f"uvicorn {_uvicorn_version()} lacks {', '.join(missing)}"
                logger.warning(
                    "sandbox upload lane is off: %s; uploads go through FastAPI's route "
                    "(the lane was checked against uvicorn %s)",
                    self.off,
                    ", ".join(CHECKED_UVICORN_VERSIONS),
                )
        return self.off is None

    async def serve(self, length: int, scope: Scope, receive: Receive, send: Send) -> None:
        self.busy += 1
        try:
            await self._serve(length, scope, send)
        finally:
            self.busy -= 1

    async def _serve(self, length: int, scope: Scope, send: Send) -> None:
        context = self.context
        headers = Headers(scope=scope)
        client = scope.get("client")
        try:
            claims = await authenticate(context, headers, {}, Address(*client) if client else None)
            sha256 = check_upload(headers, self.limit)
            present = await to_thread.run_sync(context.sandbox_files.is_stored, sha256)
        except Exception as exc:  # noqa: BLE001 - boundary: error_answer logs the unexpected
            await _answer_error(send, exc, keep_alive=True)
            return
        cycle = _cycle(send)
        if cycle is None:  # cannot be: checked by ``length`` on this very connection
            raise RuntimeError("the upload lane lost its uvicorn connection")
        try:
            reader = _take_over(cycle)
            stored = await self._receive(reader, length, sha256, keep=not present)
            created = await to_thread.run_sync(sandboxes.record_upload, context.db, claims, stored)
        except ClientGone as exc:
            logger.warning(
                "sandbox upload %s from %s was interrupted: %s", sha256, claims.subject, exc
            )
            await _answer_error(send, exc, keep_alive=False)  # if it still listens
            return
        except Exception as exc:  # noqa: BLE001 - boundary: error_answer logs the unexpected
            await _answer_error(send, exc, keep_alive=False)
            return
        context.metrics.count_hot_request("sandbox_upload", "worker")
        info = SandboxInfo(sha256=stored.sha256, size_bytes=stored.size_bytes)
        await _answer(send, 201 if created else 200, msgspec.json.encode(info), {})

    async def _receive(
        self, reader: SocketBody, length: int, sha256: str, *, keep: bool
    ) -> sandboxes.StoredSandbox:
        """The body through ``receive_blocking`` in a thread of this lane's own. Cancelled
        (the server stopping), the thread is told to stop and cleans up after itself."""
        if self._limiter is None:
            self._limiter = CapacityLimiter(MAX_CONCURRENT)
        files = self.context.sandbox_files

        def work() -> sandboxes.StoredSandbox:
            try:
                return files.receive_blocking(reader, length, sha256, keep=keep)
            finally:
                reader.close()

        try:
            stored: sandboxes.StoredSandbox = await to_thread.run_sync(
                work, limiter=self._limiter, abandon_on_cancel=True
            )
        except get_cancelled_exc_class():
            reader.stop.set()
            raise
        return stored


class SocketBody:
    """The body of one request: the bytes uvicorn held already, then the socket's.

    Reads from a duplicate of the socket's descriptor, closed at the end, so that the
    number is never reused for another connection while this thread still reads."""

    def __init__(self, held: bytes, fd: int) -> None:
        self.held = memoryview(held)
        self.stop = threading.Event()
        self._socket = socket.socket(fileno=fd)
        self._socket.settimeout(POLL_S)

    def __call__(self, buffer: memoryview) -> int:
        if self.held:
            count = min(len(buffer), len(self.held))
            buffer[:count] = self.held[:count]
            self.held = self.held[count:]
            return count
        silent_s = 0.0
        while not self.stop.is_set():
            try:
                count = self._socket.recv_into(buffer)
            except TimeoutError:
                silent_s += POLL_S
                if silent_s >= IDLE_S:
                    raise ClientGone(f"no bytes for {IDLE_S:.0f} s") from None
                continue
            except OSError as exc:  # reset
                raise ClientGone(str(exc)) from exc
            if count == 0:
                raise ClientGone("the connection closed before the body's end")
            return count
        raise ClientGone("the server is stopping")

    def close(self) -> None:
        self._socket.close()


def missing_parts(cycle: Any) -> list[str]:
    """What the lane reads of uvicorn's request cycle and ``cycle`` lacks, by name."""
    missing = [f"cycle.{name}" for name in CYCLE_NEEDS if not hasattr(cycle, name)]
    for part, needs in (("transport", TRANSPORT_NEEDS), ("flow", FLOW_NEEDS)):
        held = getattr(cycle, part, None)
        if held is not None:
            missing += [
                f"{part}.{name}" for name in needs if not callable(getattr(held, name, None))
            ]
    return missing


def _uvicorn_version() -> str:
    try:
        return importlib.metadata.version("uvicorn")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _cycle(send: Send) -> Optional[Any]:
    """uvicorn's httptools request cycle behind ``send``, if this lane can read its socket:
    plain TCP (no TLS), the body not complete yet nor the answer started."""
    cycle: Any = getattr(send, "__self__", None)
    if type(cycle).__module__ != HTTPTOOLS_CYCLE_MODULE:
        return None
    transport = getattr(cycle, "transport", None)
    flow = getattr(cycle, "flow", None)
    if transport is None or flow is None or transport.get_extra_info("sslcontext") is not None:
        return None
    if transport.get_extra_info("socket") is None or cycle.response_started:
        return None
    return cycle


def _take_over(cycle: Any) -> SocketBody:
    """Stop uvicorn reading the connection and take the body bytes it holds; after this the
    body is the returned reader's, and the answer must close the connection."""
    cycle.flow.pause_reading()
    cycle.keep_alive = False
    if cycle.disconnected or cycle.transport.is_closing():
        raise ClientGone("the connection closed before the body's end")
    if cycle.waiting_for_100_continue:
        cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        cycle.waiting_for_100_continue = False
    held = bytes(cycle.body)
    cycle.body = bytearray()
    return SocketBody(held, os.dup(cycle.transport.get_extra_info("socket").fileno()))


async def _answer_error(send: Send, exc: Exception, *, keep_alive: bool) -> None:
    status, error, extra = error_answer(exc, f"POST {PATH}")
    await _answer(send, status, msgspec.json.encode(error), extra, keep_alive=keep_alive)


async def _answer(
    send: Send, status: int, data: bytes, extra: dict[str, str], *, keep_alive: bool = False
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    headers += [(name.lower().encode(), value.encode()) for name, value in extra.items()]
    if not keep_alive:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
