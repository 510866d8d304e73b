"""Sandbox upload and download: raw bytes, streamed both ways."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from coordinator.api.deps import AppContext, get_claims, get_context
from coordinator.errors import BadRequest, TooLarge
from coordinator.logic import sandboxes
from coordinator.logic.auth import TokenClaims
from coordinator.logic.jobs import check_digest
from protocol import API_PREFIX, SHA256_HEADER, SandboxInfo

logger = logging.getLogger(__name__)
router = APIRouter(prefix=API_PREFIX, tags=["sandboxes"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class SandboxFileResponse(FileResponse):
    """A stored archive, read in 1 MiB pieces: starlette's 64 KiB reads each cost a worker
    thread round trip, and a 512 MB download cost the coordinator 3x the CPU."""

    chunk_size = 1024 * 1024


@router.post("/sandboxes", status_code=201, openapi_extra=UPLOAD_BODY)
async def upload_sandbox(
    request: Request,
    response: Response,
    claims: TokenClaims = Depends(get_claims),
    context: AppContext = Depends(get_context),
) -> SandboxInfo:
    """Store a tar archive under its sha256 (201), or confirm it is stored already (200)."""
    limit = context.settings.max_sandbox_bytes
    sha256 = check_upload(request.headers, limit)
    files = context.sandbox_files
    # Bytes the store has already are checked (they must hash to the digest: that is how
    # an uploader proves they hold them) but not stored a second time.
    present = await run_in_threadpool(files.is_stored, sha256)
    try:
        stored = await files.receive(request.stream(), sha256, limit, keep=not present)
    except ClientDisconnect as exc:
        logger.warning("sandbox upload %s from %s was interrupted", sha256, claims.subject)
        raise BadRequest("the upload was interrupted before its end") from exc
    created = await run_in_threadpool(sandboxes.record_upload, context.db, claims, stored)
    if not created:
        response.status_code = 200
    return SandboxInfo(sha256=stored.sha256, size_bytes=stored.size_bytes)


def check_upload(headers: Mapping[str, str], limit: int) -> str:
    """The announced digest of an upload whose declared length (if any) is within ``limit``;
    else ``BadRequest`` or ``TooLarge``. Shared with ``coordinator.api.socketupload``."""
    announced = headers.get(SHA256_HEADER)
    if announced is None:
        raise BadRequest(f"send the archive's sha256 in the {SHA256_HEADER} header")
    sha256 = check_digest(announced.strip().lower())
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge(
            f"sandbox of {length} bytes is larger than the limit of {limit} bytes",
            details={"max_bytes": limit, "size_bytes": int(length)},
        )
    return sha256


@router.get(
    "/sandboxes/{sha256}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_sandbox(
    sha256: str,
    claims: TokenClaims = Depends(get_claims),
    context: AppContext = Depends(get_context),
) -> Response:
    digest = check_digest(sha256)
    stored = sandboxes.readable(context.db, context.sandbox_files, claims, digest)
    headers = {SHA256_HEADER: stored.sha256}
    if stored.path is not None:
        return SandboxFileResponse(
            stored.path, media_type="application/octet-stream", headers=headers
        )
    # Not a local file (S3): streamed through this process in 1 MiB blocks, read in a
    # worker thread (see docs/scale-out.md for why not a redirect to a presigned URL).
    headers["Content-Length"] = str(stored.size_bytes)
    return StreamingResponse(
        context.sandbox_files.iter_bytes(stored),
        media_type="application/octet-stream",
        headers=headers,
    )
