"""The portal's actions that are forms: log in, log out, submit from the Job Launchpad."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from coordinator.api.deps import AppContext, get_context
from coordinator.api.session import CSRF_FIELD, SESSION_COOKIE
from coordinator.errors import BadRequest, CoordinatorError, Forbidden, InvalidDescription
from coordinator.logic import jobs, sandboxes
from coordinator.logic.auth import TokenClaims
from coordinator.logic.description import job_fields, parse_description
from coordinator.logic.presets import PARAMETRIC_JDL, TUTORIAL_JDL
from coordinator.web.render import page
from coordinator.web.session import (
    LOGIN_CSRF_COOKIE,
    check_form_csrf,
    is_local_path,
    login_redirect,
    new_login_nonce,
    page_claims,
    verified_claims,
)
from protocol import SubmitRequest

router = APIRouter(include_in_schema=False)

MAX_FILES = 100
SANDBOX_REFERENCES = ("LFN:", "SB:", "lfn:", "sb:")
FILLED_IN = ("%s", "%(")
"""InputSandbox entries that are not files to upload: references, and values parametric
expansion fills in (as in ``gridpilot submit``)."""
READ_BYTES = 1024 * 1024


@router.get("/web/login")
async def login_form(request: Request, context: AppContext = Depends(get_context)) -> Response:
    claims = await page_claims(request, context)
    if claims is not None:
        return RedirectResponse("/web/jobs", status_code=303)
    return _login_page(request, context, "", 200, request.query_params.get("next", ""))


def _login_page(
    request: Request, context: AppContext, error: str, status_code: int, target: str
) -> Response:
    nonce = new_login_nonce()
    response = page(
        request, context, "login.html", None, status_code=status_code, error=error, nonce=nonce,
        next=target if is_local_path(target) else "/web/jobs",
    )  # fmt: skip
    response.set_cookie(LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="strict", path="/web")
    return response


@router.post("/web/login")
async def login(request: Request, context: AppContext = Depends(get_context)) -> Response:
    form = await request.form(max_files=1, max_fields=5)
    sent_nonce = str(form.get("nonce") or "")
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    target = str(form.get("next") or "/web/jobs")
    if not nonce or not hmac.compare_digest(sent_nonce, nonce):
        expired = "The login form expired: please try again."
        return _login_page(request, context, expired, 403, target)
    token = str(form.get("token") or "").strip()
    upload = form.get("token_file")
    if not token and isinstance(upload, UploadFile):
        token = (await upload.read(64 * 1024)).decode("utf-8", errors="replace").strip()
    try:
        claims = await verified_claims(context, token)
    except CoordinatorError as exc:
        message = f"This token cannot log in: {exc.message}"
        return _login_page(request, context, message, 401, target)
    response = RedirectResponse(target if is_local_path(target) else "/web/jobs", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max(int(claims.expires_at.timestamp() - time.time()), 1),
        httponly=True,
        samesite="strict",
        secure=bool(context.settings.tls_cert_file),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/web")
    return response


@router.post("/web/logout")
async def logout(request: Request, context: AppContext = Depends(get_context)) -> Response:
    form = await request.form(max_files=0, max_fields=3)
    check_form_csrf(request, context, str(form.get(CSRF_FIELD) or ""))
    response = RedirectResponse("/web/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/web/launchpad")
async def launchpad(request: Request, context: AppContext = Depends(get_context)) -> Response:
    claims = await page_claims(request, context)
    if claims is None:
        return login_redirect(request)
    presets = {"hello": TUTORIAL_JDL, "parametric": PARAMETRIC_JDL}
    return page(
        request, context, "launchpad.html", claims, active="launchpad", presets=presets,
        max_bytes=context.settings.max_request_bytes,
    )  # fmt: skip


@router.post("/web/launchpad")
async def launchpad_submit(
    request: Request, context: AppContext = Depends(get_context)
) -> Response:
    """Submit the editor's description with the chosen files as its input sandbox; the
    reply is the API's: ``{"job_ids": [...]}`` or ``{code, message, details}``."""
    claims = await page_claims(request, context)
    if claims is None:
        raise Forbidden("your session has ended: log in again")
    form = await request.form(max_files=MAX_FILES, max_fields=10)
    check_form_csrf(request, context, str(form.get(CSRF_FIELD) or ""))
    uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
    body = SubmitRequest(
        description=str(form.get("description") or ""), format=str(form.get("format") or "jdl")
    )
    _check_input_files(body, [_base_name(item.filename or "") for item in _named(uploads)])
    if _named(uploads):
        digest = await _store_sandbox(context, claims, uploads)
        body = dataclasses.replace(body, input_sandboxes=[digest])
    job_ids = await run_in_threadpool(jobs.submit, context.db, context.settings, claims, body)
    return JSONResponse({"job_ids": job_ids}, status_code=201)


def _check_input_files(body: SubmitRequest, uploaded: Sequence[str]) -> None:
    """Every InputSandbox entry naming a plain file must be among the chosen files (as
    ``gridpilot submit`` wants it next to the JDL): else the job would fail on the node."""
    description = parse_description(body.description, body.format)
    for entry in job_fields(description).input_sandbox:
        name = str(entry).strip()
        if not name or name.startswith(SANDBOX_REFERENCES) or name.startswith(FILLED_IN):
            continue
        if name.rsplit("/", 1)[-1] not in uploaded:
            raise InvalidDescription(
                f"InputSandbox names {name}: choose that file to upload with the job",
                details={"attribute": "InputSandbox", "file": name},
            )


def _named(uploads: Sequence[UploadFile]) -> list[UploadFile]:
    return [item for item in uploads if item.filename]


async def _store_sandbox(
    context: AppContext, claims: TokenClaims, uploads: Sequence[UploadFile]
) -> str:
    """Pack the uploaded files (under their base names) as one input sandbox and store it
    as an upload of the caller's, as ``gridpilot submit`` does with local files."""
    names = [_base_name(item.filename or "") for item in _named(uploads)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BadRequest(f"two files share the name {duplicates[0]}", details={"files": duplicates})
    fd, tmp_name = tempfile.mkstemp(
        prefix="launchpad-", suffix=".tar.gz", dir=context.store.staging_dir()
    )
    os.close(fd)
    archive = Path(tmp_name)
    try:
        digest = await anyio.to_thread.run_sync(_pack, archive, list(zip(names, _named(uploads))))
        files = context.sandbox_files
        present = await run_in_threadpool(files.is_stored, digest)
        stored = await files.receive(
            _read(archive), digest, context.settings.max_sandbox_bytes, keep=not present
        )
        await run_in_threadpool(sandboxes.record_upload, context.db, claims, stored)
        return stored.sha256
    finally:
        archive.unlink(missing_ok=True)


def _base_name(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if name in ("", ".", ".."):
        raise BadRequest(f"{filename!r} is not a file name", details={"file": filename})
    return name


def _pack(archive: Path, files: list[tuple[str, UploadFile]]) -> str:
    with tarfile.open(archive, mode="w:gz") as tar:
        for name, upload in files:
            upload.file.seek(0, os.SEEK_END)
            info = tarfile.TarInfo(name)
            info.size = upload.file.tell()
            info.mode = 0o644
            upload.file.seek(0)
            tar.addfile(info, upload.file)
    hasher = hashlib.sha256()
    with open(archive, "rb") as stream:
        for piece in iter(lambda: stream.read(READ_BYTES), b""):
            hasher.update(piece)
    return hasher.hexdigest()


async def _read(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as stream:
        while True:
            piece: Any = await anyio.to_thread.run_sync(stream.read, READ_BYTES)
            if not piece:
                return
            yield piece
