"""The pilots' hot routes, served below FastAPI: match, heartbeats, job reports, sandbox
downloads (``sendfile``, ``coordinator.api.zerocopy``) and large sandbox uploads (read from
the socket, ``coordinator.api.socketupload``).

These are the requests that grow with the grid (every pilot, every job, every interval).
Through FastAPI each one paid for dependency solving, pydantic's validation of the body and
of the reply, seven middlewares and a worker-thread hand-off: 4 to 7 times the CPU of a
bare ASGI app answering the same connection (docs/benchmarks.md, "Coordinator hot path").
``HotPath`` wraps the FastAPI application and serves the common case of these routes
itself, calling the very functions the FastAPI endpoints call (``coordinator.api.pilots``):

- the body is decoded and type-checked in one step by msgspec, straight into the wire
  contract's dataclasses, and the reply encoded by msgspec;
- the token, role, protocol and rate-limit checks are ``coordinator.api.deps``'s own;
- the database work runs on the event loop's thread when no other write of this process is
  under way (SQLite: a match or a heartbeat is a fraction of a millisecond of CPU either
  way, and the hand-off to a thread cost as much as the work); otherwise in a thread, as
  FastAPI would.

Anything unusual goes to FastAPI untouched, so its answers stay the reference: a body
without Content-Length or over the size limit, another content type, a path FastAPI would
answer with an error, and a body that does not decode into the message (FastAPI then
answers with its validation error, the body given back to it as it came). The routes stay
declared in FastAPI, which documents them (OpenAPI) and serves what this lane declines;
``tests/coordinator/test_hotpath.py`` sends the same requests both ways and compares.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Optional

import msgspec
from anyio import to_thread
from fastapi import FastAPI
from starlette.datastructures import Address, Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coordinator.api import pilots
from coordinator.api.deps import (
    MAX_DB_INT,
    AppContext,
    authenticate,
    check_pilot,
    pilot_id_of,
)
from coordinator.api.failures import error_answer
from coordinator.api.socketupload import SocketUploads
from coordinator.api.zerocopy import send_file
from coordinator.errors import WriterBusy
from coordinator.logic import sandboxes
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import check_message
from coordinator.logic.jobs import check_digest
from coordinator.store.database import Database
from protocol import (
    API_PREFIX,
    SHA256_HEADER,
    Heartbeat,
    JobStatusUpdate,
    MatchRequest,
    PilotHeartbeat,
)

logger = logging.getLogger(__name__)

Serve = Callable[[AppContext, Database, TokenClaims, str, int, Any], Any]
"""A route's work: (context, database, claims, pilot id, job id or -1, message) -> reply."""


@dataclasses.dataclass(frozen=True)
class HotRoute:
    name: str
    """For the metrics: ``gridpilot_hot_path_requests_total{route=...}``."""
    message: type[Any]
    serve: Serve
    decoder: msgspec.json.Decoder[Any]


def _route(name: str, message: type[Any], serve: Serve) -> HotRoute:
    return HotRoute(name, message, serve, msgspec.json.Decoder(message))


ROUTES: dict[tuple[str, str], HotRoute] = {
    ("pilots", "match"): _route(
        "match", MatchRequest, lambda c, db, cl, p, _j, m: pilots.serve_match(c, db, cl, p, m)
    ),
    ("pilots", "heartbeat"): _route(
        "pilot_heartbeat",
        PilotHeartbeat,
        lambda c, db, cl, p, _j, m: pilots.serve_pilot_heartbeat(c, db, cl, p, m),
    ),
    ("jobs", "status"): _route("job_status", JobStatusUpdate, pilots.serve_status),
    ("jobs", "heartbeat"): _route("job_heartbeat", Heartbeat, pilots.serve_job_heartbeat),
}
"""``(collection, action)`` of ``POST /api/v1/{collection}/{id}/{action}``."""

_PREFIX = API_PREFIX + "/"
_ENCODER = msgspec.json.Encoder()
_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclasses.dataclass(frozen=True)
class Call:
    """One request this lane serves: its route and what the path names."""

    route: HotRoute
    pilot_id: str
    """From the path (pilot routes) or, for job routes, filled in from the header later."""
    job_id: int
    """-1 on pilot routes."""


class HotPath:
    """ASGI wrapper of the FastAPI app: the hot routes here, everything else to FastAPI."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.context: AppContext = app.state.context
        self.max_body_bytes = self.context.settings.max_request_bytes
        self.uploads = SocketUploads(self.context)
        """Large sandbox uploads, read from the socket (``coordinator.api.socketupload``)."""
        self.sendfile_downloads = self.context.store.local_files
        """Downloads by sendfile only from a store of local files; an S3 store's are
        streamed by FastAPI's route (``coordinator.api.sandboxes``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upload = self.uploads.length(scope, send) if scope["type"] == "http" else None
        if upload is not None:
            await self.uploads.serve(upload, scope, receive, send)
            return
        call = self._call(scope) if scope["type"] == "http" else None
        if call is None:
            lane = scope["type"] == "http" and self.sendfile_downloads
            digest = _download(scope) if lane else None
            if digest is None:
                await self.app(scope, receive, send)
            else:
                await self._download(digest, scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        try:
            message = call.route.decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            await self.app(scope, _replay(body, receive), send)
            return
        await self._serve(call, message, scope, send)

    def _call(self, scope: Scope) -> Optional[Call]:
        """The hot route this request is, if this lane serves it; None sends it to FastAPI."""
        path: str = scope["path"]
        if scope["method"] != "POST" or not path.startswith(_PREFIX):
            return None
        parts = path[len(_PREFIX) :].split("/")
        if len(parts) != 3 or not parts[1]:
            return None
        collection, name, action = parts
        route = ROUTES.get((collection, action))
        if route is None:
            return None
        if not _plain_json(scope["headers"], self.max_body_bytes):
            return None
        if collection == "pilots":
            return Call(route, name, -1)
        job_id = _job_id(name)
        return None if job_id is None else Call(route, "", job_id)

    async def _serve(self, call: Call, message: Any, scope: Scope, send: Send) -> None:
        try:
            reply = await self._answer(call, message, scope)
        except Exception as exc:  # noqa: BLE001 - boundary: error_answer logs the unexpected
            status, error, headers = error_answer(exc, f"POST {scope['path']}")
            await _send_json(send, status, error, headers)
            return
        await _send_json(send, 200, reply, {})

    async def _answer(self, call: Call, message: Any, scope: Scope) -> Any:
        context = self.context
        headers = Headers(scope=scope)
        params = {"pilot_id": call.pilot_id} if call.job_id < 0 else {}
        client = scope.get("client")
        address = Address(*client) if client else None
        claims = await authenticate(context, headers, params, address)
        check_pilot(claims, headers, context.settings)
        pilot_id = call.pilot_id if call.job_id < 0 else pilot_id_of(headers)
        check_message(message)

        def work(db: Database) -> Any:
            return call.route.serve(context, db, claims, pilot_id, call.job_id, message)

        reply, thread = await run_write(context.db, work)
        context.metrics.count_hot_request(call.route.name, thread)
        return reply

    async def _download(self, digest: str, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /api/v1/sandboxes/{sha256}``: FastAPI's checks, then ``sendfile``."""
        context = self.context
        try:
            headers = Headers(scope=scope)
            client = scope.get("client")
            claims = await authenticate(context, headers, {}, Address(*client) if client else None)
            check_digest(digest)

            # A read: on SQLite never kept waiting by a writer (WAL), so on this thread.
            def read() -> sandboxes.StoredSandbox:
                return sandboxes.readable(context.db, context.sandbox_files, claims, digest)

            stored = read() if context.db.is_sqlite else await to_thread.run_sync(read)
        except Exception as exc:  # noqa: BLE001 - boundary: error_answer logs the unexpected
            status, error, extra = error_answer(exc, f"GET {scope['path']}")
            await _send_json(send, status, error, extra)
            return
        if stored.path is None:  # not a local file after all: FastAPI streams it
            await self.app(scope, receive, send)
            return
        answer = [
            (b"content-type", b"application/octet-stream"),
            (SHA256_HEADER.lower().encode(), stored.sha256.encode()),
        ]
        await send_file(send, stored.path, stored.size_bytes, answer)


async def run_write(db: Database, work: Callable[[Database], Any]) -> tuple[Any, str]:
    """``work(db)``, on this (the event loop's) thread if it needs not wait for another
    writer, else in a worker thread; and which thread it was ("loop" or "worker").

    ``work`` must do one write transaction at most: it is started again from the beginning
    in the thread if its first write found the turn taken."""
    if db.is_sqlite:
        try:
            return work(db.without_waiting()), "loop"
        except WriterBusy:
            pass
    return await to_thread.run_sync(work, db), "worker"


def _plain_json(headers: list[tuple[bytes, bytes]], limit: int) -> bool:
    """Whether the body is JSON of a declared length within ``limit``, and the request
    carries no cookie (a portal session is FastAPI's to read)."""
    length: Optional[int] = None
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                return False
            length = int(value)
        elif name == b"content-type":
            if not value.lower().startswith(b"application/json"):
                return False
        elif name in (b"transfer-encoding", b"cookie"):
            return False  # chunked bodies; the portal's sessions (api/session.py)
    return length is not None and length <= limit


_SANDBOXES = f"{API_PREFIX}/sandboxes/"
_PLAIN_GET_SKIPS = (b"range", b"if-range", b"if-none-match", b"if-modified-since", b"cookie")
"""Left to FastAPI: ranged and conditional reads, and the portal's sessions."""


def _download(scope: Scope) -> Optional[str]:
    """The digest a plain sandbox download names (no range, no conditions, no cookie),
    else None."""
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(_SANDBOXES):
        return None
    digest = path[len(_SANDBOXES) :]
    if not digest or "/" in digest:
        return None
    if any(name in _PLAIN_GET_SKIPS for name, _value in scope["headers"]):
        return None
    return digest


def _job_id(text: str) -> Optional[int]:
    """A job id as FastAPI reads it in these paths, if it is plainly one; None otherwise."""
    if not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return None
    job_id = int(text)
    return job_id if job_id <= MAX_DB_INT else None


async def _read_body(receive: Receive) -> Optional[bytes]:
    """The whole body (it was declared at most the size limit); None if the client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that gives the body read already, then whatever comes next."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _send_json(send: Send, status: int, reply: Any, extra: dict[str, str]) -> None:
    data = _ENCODER.encode(reply)
    headers = [*_JSON_HEADERS, (b"content-length", str(len(data)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def serving_app(app: FastAPI) -> ASGIApp:
    """What uvicorn serves: the hot routes in front of the FastAPI app."""
    return HotPath(app)
