"""User endpoints on jobs: submit, read, history, kill, delete."""

from __future__ import annotations

import dataclasses
from typing import Optional

from fastapi import APIRouter, Depends

from coordinator.api.deps import AppContext, get_context, require_user
from coordinator.errors import BadRequest
from coordinator.logic import jobs
from coordinator.logic.auth import TokenClaims
from pilot.protocol import API_PREFIX, HistoryEntry, JobInfo, SubmitReply, SubmitRequest

router = APIRouter(prefix=API_PREFIX, tags=["jobs"])

MAX_LISTED = 10_000


@dataclasses.dataclass(frozen=True)
class JobList:
    jobs: list[JobInfo]


@dataclasses.dataclass(frozen=True)
class JobHistory:
    history: list[HistoryEntry]


@router.post("/jobs", status_code=201)
def submit_jobs(
    body: SubmitRequest,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> SubmitReply:
    job_ids = jobs.submit(context.db, context.settings, claims, body)
    return SubmitReply(job_ids=job_ids)


@router.get("/jobs")
def list_jobs(
    ids: Optional[str] = None,  # FastAPI evaluates this at run time: no "|" on 3.9
    limit: int = 1000,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobList:
    """The jobs named in ``ids`` (comma-separated) that the caller may see, or without
    ``ids`` the caller's latest jobs (all users' for admins), Deleted ones left out."""
    if not 1 <= limit <= MAX_LISTED:
        raise BadRequest(f"limit must be between 1 and {MAX_LISTED}")
    job_ids = _parse_ids(ids) if ids is not None else None
    return JobList(jobs=jobs.get_jobs(context.db, claims, job_ids, limit))


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise BadRequest("ids must be comma-separated job ids", details={"ids": text}) from exc


@router.get("/jobs/{job_id}")
def get_job(
    job_id: int,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobInfo:
    return jobs.get_job(context.db, claims, job_id)


@router.get("/jobs/{job_id}/history")
def job_history(
    job_id: int,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobHistory:
    return JobHistory(history=jobs.history(context.db, claims, job_id))


@router.post("/jobs/{job_id}/kill")
def kill_job(
    job_id: int,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobInfo:
    return jobs.kill(context.db, claims, job_id)


@router.delete("/jobs/{job_id}")
def delete_job(
    job_id: int,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobInfo:
    return jobs.delete(context.db, claims, job_id)
