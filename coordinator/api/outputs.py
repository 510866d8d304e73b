"""A job's output sandbox: the archive, its file list, one file (the portal's downloads)."""

from __future__ import annotations

import dataclasses
import mimetypes
from urllib.parse import quote

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from coordinator.api.deps import AppContext, JobIdPath, get_context, require_user
from coordinator.logic import outputs
from coordinator.logic.auth import TokenClaims
from protocol import API_PREFIX, SHA256_HEADER

router = APIRouter(prefix=API_PREFIX, tags=["outputs"])


@dataclasses.dataclass(frozen=True)
class OutputListing:
    files: list[outputs.OutputFile]
    sha256: str


@router.get(
    "/jobs/{job_id}/output",
    response_class=FileResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
def output_archive(
    job_id: JobIdPath,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> FileResponse:
    """The whole output sandbox, as ``job_<id>_output.tar.gz``."""
    stored = outputs.output_archive(context.db, context.sandbox_files, claims, job_id)
    return FileResponse(
        context.sandbox_files.local_file(stored),
        media_type="application/gzip",
        filename=f"job_{job_id}_output.tar.gz",
        headers={SHA256_HEADER: stored.sha256},
    )


@router.get("/jobs/{job_id}/output/files")
def output_files(
    job_id: JobIdPath,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> OutputListing:
    """The files in the output sandbox, with their sizes."""
    stored = outputs.output_archive(context.db, context.sandbox_files, claims, job_id)
    archive = context.sandbox_files.local_file(stored)
    return OutputListing(files=outputs.list_files(archive), sha256=stored.sha256)


@router.get(
    "/jobs/{job_id}/output/files/{name:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def output_file(
    job_id: JobIdPath,
    name: str,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> StreamingResponse:
    """One file of the output sandbox, as an attachment."""
    stored = await run_in_threadpool(
        outputs.output_archive, context.db, context.sandbox_files, claims, job_id
    )
    archive = await run_in_threadpool(context.sandbox_files.local_file, stored)
    chunks = await run_in_threadpool(outputs.file_chunks, archive, name)
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media_type.startswith("text/"):
        media_type += "; charset=utf-8"
    base = quote(name.rsplit("/", 1)[-1])
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{base}"}
    return StreamingResponse(chunks, media_type=media_type, headers=headers)
