"""User endpoints on jobs: submit, read, history, kill, delete."""

from __future__ import annotations

from collections import Counter
from typing import Optional

from fastapi import APIRouter, Depends

from coordinator.api.deps import (
    CURSOR_QUERY,
    LIMIT_QUERY,
    MAX_DB_INT,
    AppContext,
    JobIdPath,
    get_context,
    require_user,
)
from coordinator.errors import BadRequest
from coordinator.logic import explanations, jobs, listing, rescheduling
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import check_message
from coordinator.logic.paging import page_request
from protocol import (
    API_PREFIX,
    JobExplanation,
    JobHistory,
    JobInfo,
    JobList,
    SubmitReply,
    SubmitRequest,
)

router = APIRouter(prefix=API_PREFIX, tags=["jobs"])


@router.post("/jobs", status_code=201)
def submit_jobs(
    body: SubmitRequest,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> SubmitReply:
    check_message(body)
    job_ids = jobs.submit(context.db, context.settings, claims, body)
    context.queue_index.forget(claims.vo)  # the next match of the VO reads its queues again
    return SubmitReply(job_ids=job_ids)


@router.get("/jobs")
def list_jobs(
    ids: Optional[str] = None,  # FastAPI evaluates this at run time: no "|" on 3.9
    status: Optional[str] = None,
    owner: Optional[str] = None,
    site: Optional[str] = None,
    job_group: Optional[str] = None,
    limit: int = LIMIT_QUERY,
    cursor: Optional[str] = CURSOR_QUERY,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobList:
    """The jobs named in ``ids`` (comma-separated; the first ``limit`` of them) that the
    caller may see, or without ``ids`` one page of the caller's jobs (all users' for
    admins), newest first, Deleted ones left out unless asked for, filtered by ``status``
    (comma-separated), ``owner`` (admins only for others), ``site`` and ``job_group``;
    ``counts`` gives the jobs per status over every page. Descriptions are left out."""
    page = page_request(limit, cursor, listing.JOB_CURSOR)
    if ids is not None:
        found = jobs.get_jobs(context.db, claims, _parse_ids(ids)[:limit])
        return JobList(jobs=found, counts=dict(Counter(info.status.value for info in found)))
    wanted = listing.JobFilter(listing.parse_statuses(status), owner, site, job_group)
    result = listing.list_jobs(context.db, claims, wanted, page)
    return JobList(jobs=result.jobs, counts=result.counts, next_cursor=result.next_cursor)


def _parse_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise BadRequest("ids must be comma-separated job ids", details={"ids": text}) from exc
    if not all(0 <= job_id <= MAX_DB_INT for job_id in ids):
        raise BadRequest(f"job ids must be between 0 and {MAX_DB_INT}")
    return ids


@router.get("/jobs/{job_id}")
def get_job(
    job_id: JobIdPath,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobInfo:
    return jobs.get_job(context.db, claims, job_id)


@router.get("/jobs/{job_id}/explain")
def explain_job(
    job_id: JobIdPath,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobExplanation:
    """Why the job is not running: each requirement against the pilots seen lately, the one
    that alone excludes them all, its place in its task queue, its owner's fair share."""
    return explanations.explain_job(context.db, context.settings, claims, job_id)


@router.get("/jobs/{job_id}/history")
def job_history(
    job_id: JobIdPath,
    limit: int = LIMIT_QUERY,
    cursor: Optional[str] = CURSOR_QUERY,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobHistory:
    """The job's status changes, oldest first, one page at a time."""
    page = page_request(limit, cursor, jobs.HISTORY_CURSOR)
    found = jobs.history(context.db, claims, job_id, page)
    return JobHistory(history=found.items, next_cursor=found.next_cursor)


@router.post("/jobs/{job_id}/kill")
def kill_job(
    job_id: JobIdPath,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobInfo:
    return jobs.kill(context.db, claims, job_id)


@router.post("/jobs/{job_id}/reschedule")
def reschedule_job(
    job_id: JobIdPath,
    reset: bool = False,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobInfo:
    """Run the job again from scratch (Rescheduled, then Waiting), as DIRAC's reschedule:
    from Done, Failed, Killed, Completed, or from a pilot that holds it. ``reset=true``
    zeroes the reschedule counter first."""
    return rescheduling.reschedule_job(context.db, context.settings, claims, job_id, reset=reset)


@router.delete("/jobs/{job_id}")
def delete_job(
    job_id: JobIdPath,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JobInfo:
    return jobs.delete(context.db, claims, job_id)
