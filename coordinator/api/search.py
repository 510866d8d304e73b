"""``POST /jobs/search`` and ``POST /jobs/summary``, shaped like DiracX's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from coordinator.api.deps import AppContext, get_context, require_user
from coordinator.logic import search
from coordinator.logic.auth import TokenClaims
from protocol import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["search"])


@router.post("/jobs/search", responses={206: {"description": "One page of a longer result"}})
async def search_jobs(
    body: search.SearchParams,
    response: Response,
    page: int = Query(1, ge=1, le=2**31),
    per_page: int = Query(search.DEFAULT_PER_PAGE, ge=1, le=search.MAX_PER_PAGE),
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> list[dict[str, Any]]:
    """The jobs the caller may see matching every condition in ``search``, sorted, one page
    at a time. ``Content-Range: jobs FIRST-LAST/TOTAL`` gives the total; the status is 206
    when the page is not the whole result."""
    found = await run_in_threadpool(search.search, context.db, claims, body, page, per_page)
    if found.rows:
        last = found.first + len(found.rows) - 1
        response.headers["Content-Range"] = f"jobs {found.first}-{last}/{found.total}"
        if len(found.rows) < found.total:
            response.status_code = 206
    else:
        response.headers["Content-Range"] = f"jobs */{found.total}"
    return found.rows


@router.post("/jobs/summary")
async def summarise_jobs(
    body: search.SummaryParams,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> list[dict[str, Any]]:
    """Counts of the caller's visible jobs per combination of the ``grouping`` attributes,
    each ``{<attribute>: value, ..., "count": n}``."""
    return await run_in_threadpool(search.summary, context.db, claims, body)
