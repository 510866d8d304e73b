"""Log endpoints: pilots append raw bytes by offset; owners and admins read them back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from coordinator.api.deps import (
    AppContext,
    JobIdPath,
    get_claims,
    get_context,
    pilot_id_header,
    require_pilot,
    require_user,
)
from coordinator.errors import BadRequest
from coordinator.logic import logs
from coordinator.logic.auth import TokenClaims
from coordinator.settings import Settings
from protocol import (
    API_PREFIX,
    LOG_COMPLETE_HEADER,
    LOG_NEXT_OFFSET_HEADER,
    LOG_SIZE_HEADER,
    LogAppendReply,
)

router = APIRouter(prefix=API_PREFIX, tags=["logs"])

DEFAULT_READ_BYTES = 1024 * 1024
MAX_READ_BYTES = 16 * 1024 * 1024

RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
RAW_REPLY: dict[int | str, dict[str, Any]] = {200: {"content": {"application/octet-stream": {}}}}


async def _chunk(request: Request, settings: Settings, offset: int) -> bytes:
    """The request body, refused (413) as soon as it is longer than a log chunk may be."""
    length = request.headers.get("content-length", "")
    if length.isdigit():
        logs.check_chunk(settings, offset, int(length))
    body = bytearray()
    try:
        async for part in request.stream():
            body += part
            logs.check_chunk(settings, offset, len(body))
    except ClientDisconnect as exc:
        raise BadRequest("the log chunk was interrupted before its end") from exc
    return bytes(body)


def _files(context: AppContext) -> logs.LogFiles:
    return logs.LogFiles(context.store)


def _raw(piece: logs.LogSlice) -> Response:
    headers = {
        LOG_NEXT_OFFSET_HEADER: str(piece.next_offset),
        LOG_SIZE_HEADER: str(piece.size_bytes),
        LOG_COMPLETE_HEADER: "true" if piece.complete else "false",
    }
    return Response(piece.data, media_type="application/octet-stream", headers=headers)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_READ_BYTES:
        raise BadRequest(f"limit must be between 1 and {MAX_READ_BYTES}", details={"limit": limit})


@router.put("/jobs/{job_id}/logs/{stream}", openapi_extra=RAW_BODY)
async def append_job_log(
    job_id: JobIdPath,
    stream: str,
    request: Request,
    offset: int = 0,
    claims: TokenClaims = Depends(require_pilot),
    pilot_id: str = Depends(pilot_id_header),
    context: AppContext = Depends(get_context),
) -> LogAppendReply:
    """Append bytes of a job's stdout or stderr at ``offset`` (the pilot holding the job)."""
    data = await _chunk(request, context.settings, offset)
    return await run_in_threadpool(
        logs.append_job_log,
        context.db,
        context.settings,
        _files(context),
        claims,
        pilot_id,
        job_id,
        stream,
        offset,
        data,
    )


@router.get("/jobs/{job_id}/logs/{stream}", response_class=Response, responses=RAW_REPLY)
def read_job_log(
    job_id: JobIdPath,
    stream: str,
    offset: int = 0,
    limit: int = DEFAULT_READ_BYTES,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> Response:
    """Bytes of a job's stream from ``offset``; ``X-Log-Complete: true`` once it is over."""
    _check_limit(limit)
    return _raw(
        logs.read_job_log(context.db, _files(context), claims, job_id, stream, offset, limit)
    )


@router.put("/pilots/{pilot_id}/log", openapi_extra=RAW_BODY)
async def append_pilot_log(
    pilot_id: str,
    request: Request,
    offset: int = 0,
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> LogAppendReply:
    """Append bytes of the pilot's own log at ``offset`` (that pilot only)."""
    data = await _chunk(request, context.settings, offset)
    return await run_in_threadpool(
        logs.append_pilot_log,
        context.db,
        context.settings,
        _files(context),
        claims,
        pilot_id,
        offset,
        data,
    )


@router.get("/pilots/{pilot_id}/log", response_class=Response, responses=RAW_REPLY)
def read_pilot_log(
    pilot_id: str,
    offset: int = 0,
    limit: int = DEFAULT_READ_BYTES,
    claims: TokenClaims = Depends(get_claims),
    context: AppContext = Depends(get_context),
) -> Response:
    """Bytes of a pilot's log from ``offset`` (admins; the pilot token's subject)."""
    _check_limit(limit)
    return _raw(logs.read_pilot_log(context.db, _files(context), claims, pilot_id, offset, limit))
