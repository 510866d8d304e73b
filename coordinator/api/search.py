"""``POST /jobs/search`` and ``POST /jobs/summary``, shaped like DiracX's."""

from __future__ import annotations

import dataclasses
from typing import Optional

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from coordinator.api.deps import AppContext, get_context, require_user
from coordinator.logic import search
from coordinator.logic.auth import TokenClaims
from protocol import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["search"])


@dataclasses.dataclass(frozen=True)
class JobRow:
    """One job of a search reply: the attributes asked for in ``parameters`` (all of
    them by default), under DIRAC's names; attributes not asked for are left out."""

    JobID: Optional[int] = None
    Status: Optional[str] = None
    MinorStatus: Optional[str] = None
    ApplicationStatus: Optional[str] = None
    Site: Optional[str] = None
    JobName: Optional[str] = None
    JobGroup: Optional[str] = None
    Owner: Optional[str] = None
    OwnerGroup: Optional[str] = None
    VO: Optional[str] = None
    SubmissionTime: Optional[str] = None
    LastUpdateTime: Optional[str] = None
    HeartBeatTime: Optional[str] = None
    RescheduleCounter: Optional[int] = None
    Priority: Optional[int] = None
    PilotID: Optional[str] = None
    ExitCode: Optional[int] = None
    Platform: Optional[str] = None
    NumberOfProcessors: Optional[int] = None
    MaxRAM: Optional[int] = None
    CPUTime: Optional[int] = None
    WallTime: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class SummaryRow(JobRow):
    """The grouping attributes' values (the others left out) and how many jobs have them."""

    count: int = 0


@router.post(
    "/jobs/search",
    response_model=list[JobRow],
    responses={206: {"description": "One page of a longer result", "model": list[JobRow]}},
)
async def search_jobs(
    body: search.SearchParams,
    page: int = Query(1, ge=1, le=2**31),
    per_page: int = Query(search.DEFAULT_PER_PAGE, ge=1, le=search.MAX_PER_PAGE),
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JSONResponse:
    """The jobs the caller may see matching every condition in ``search``, sorted, one page
    at a time. ``Content-Range: jobs FIRST-LAST/TOTAL`` gives the total; the status is 206
    when the page is not the whole result."""
    found = await run_in_threadpool(search.search, context.db, claims, body, page, per_page)
    status, content_range = 200, f"jobs */{found.total}"
    if found.rows:
        last = found.first + len(found.rows) - 1
        content_range = f"jobs {found.first}-{last}/{found.total}"
        if len(found.rows) < found.total:
            status = 206
    # The rows as they are: only the attributes asked for (a model would add the others).
    return JSONResponse(found.rows, status_code=status, headers={"Content-Range": content_range})


@router.post("/jobs/summary", response_model=list[SummaryRow])
async def summarise_jobs(
    body: search.SummaryParams,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> JSONResponse:
    """Counts of the caller's visible jobs per combination of the ``grouping`` attributes,
    each ``{<attribute>: value, ..., "count": n}``."""
    return JSONResponse(await run_in_threadpool(search.summary, context.db, claims, body))
