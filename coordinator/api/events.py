"""``GET /events``: the live Server-Sent Events stream of job status changes and log appends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Optional

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from coordinator.api.deps import MAX_DB_INT, AppContext, get_context, require_user
from coordinator.logic import events
from coordinator.logic.auth import TokenClaims
from coordinator.logic.logs import LogFiles
from protocol import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["events"])

KEEPALIVE_S = 15.0
RECONNECT_MS = 1000


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def event_stream(
    request: Request,
    job_id: Optional[int] = Query(None, ge=0, le=MAX_DB_INT),
    logs: bool = True,
    last_event_id: Optional[int] = Query(None, ge=0, le=MAX_DB_INT),
    last_event_id_header: Optional[str] = Header(None, alias="Last-Event-ID"),
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> StreamingResponse:
    """Events ``status`` (``{job_id, status, minor_status, application_status, at}``) and
    ``log`` (``{job_id, stream, offset, size_bytes, text, truncated, at}``) of the jobs the
    caller may see (one job with ``job_id``; no log appends with ``logs=false``), from now
    on, or after the event named by the ``Last-Event-ID`` header (or ``last_event_id``).
    ``reset`` means that event is no longer kept: reload, then follow the stream again."""
    resume = last_event_id
    if last_event_id_header and last_event_id_header.strip().isdigit():
        resume = min(int(last_event_id_header.strip()), MAX_DB_INT)
    scope = events.StreamScope.for_caller(claims, job_id=job_id, logs=logs)
    body = _stream(request, context, scope, resume)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


async def _stream(
    request: Request, context: AppContext, scope: events.StreamScope, resume: Optional[int]
) -> AsyncIterator[str]:
    settings = context.settings
    files = LogFiles(context.store)
    position, reset = await run_in_threadpool(events.start_position, context.db, resume)
    yield f"retry: {RECONNECT_MS}\n\n"
    if reset:
        yield events.reset_event(position)
    cursor = events.EventCursor(position)
    # A stream ends after a while and the browser reconnects with Last-Event-ID: a
    # coordinator restarting or a load balancer moving clients never strands one.
    ends_at = time.monotonic() + settings.event_stream_max_s
    quiet_since = time.monotonic()
    while time.monotonic() < ends_at and not await request.is_disconnected():
        batch = await run_in_threadpool(events.poll, context.db, files, scope, cursor)
        for event in batch:
            yield event.to_sse()
        if batch:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
        await asyncio.sleep(settings.event_poll_s)
