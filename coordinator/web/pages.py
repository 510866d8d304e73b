"""The portal's read-only pages: Job Monitor, job page, pilots, accounting."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from coordinator.api.deps import MAX_DB_INT, AppContext, get_context
from coordinator.errors import BadRequest, NotFound
from coordinator.logic import logs, registry, search
from coordinator.logic.auth import TokenClaims
from coordinator.logic.paging import page_request
from coordinator.web import jobpage
from coordinator.web.monitor import (
    COLUMNS,
    PAGE_SIZES,
    STATUSES,
    MonitorView,
    query_lists,
    total_pages,
)
from coordinator.web.render import page
from coordinator.web.session import login_redirect, page_claims

router = APIRouter(include_in_schema=False)

MAX_PILOTS_SHOWN = 500


@router.get("/")
@router.get("/web")
async def home() -> RedirectResponse:
    return RedirectResponse("/web/jobs", status_code=303)


@router.get("/web/jobs")
async def monitor(request: Request, context: AppContext = Depends(get_context)) -> Response:
    claims = await page_claims(request, context)
    if claims is None:
        return login_redirect(request)
    view = MonitorView.from_query(query_lists(request.query_params.multi_items()))
    try:
        found, by_status, by_site = await run_in_threadpool(_monitor_data, context, claims, view)
        error = ""
    except BadRequest as exc:
        found, by_status, by_site, error = search.SearchPage([], 0, 0), [], [], exc.message
    return page(
        request,
        context,
        "monitor.html",
        claims,
        active="monitor",
        view=view,
        rows=found.rows,
        total=found.total,
        pages=total_pages(found.total, view.per_page),
        columns=COLUMNS,
        page_sizes=PAGE_SIZES,
        statuses=STATUSES,
        by_status=by_status,
        by_site=by_site,
        error=error,
    )


def _monitor_data(
    context: AppContext, claims: TokenClaims, view: MonitorView
) -> tuple[search.SearchPage, list[dict[str, Any]], list[dict[str, Any]]]:
    found = search.search(context.db, claims, view.search(), view.page, view.per_page)
    by_status = search.summary(context.db, claims, view.status_summary())
    by_site = search.summary(context.db, claims, view.site_summary())
    return found, by_status, by_site


@router.get("/web/jobs/{job_id}")
async def job_page(
    request: Request,
    job_id: int = Path(ge=0, le=MAX_DB_INT),
    context: AppContext = Depends(get_context),
) -> Response:
    claims = await page_claims(request, context)
    if claims is None:
        return login_redirect(request)
    try:
        data = await run_in_threadpool(
            jobpage.gather, context.db, context.settings, context.sandbox_files, claims, job_id
        )
    except NotFound as exc:
        return page(request, context, "error.html", claims, status_code=404, message=exc.message)
    return page(request, context, "job.html", claims, active="monitor", job=data)


@router.get("/web/pilots")
async def pilots(request: Request, context: AppContext = Depends(get_context)) -> Response:
    claims = await page_claims(request, context)
    if claims is None:
        return login_redirect(request)
    page_of = page_request(MAX_PILOTS_SHOWN, None, registry.PILOT_CURSOR)
    found = (await run_in_threadpool(registry.list_pilots, context.db, claims, page_of)).items
    return page(request, context, "pilots.html", claims, active="pilots", pilots=found)


@router.get("/web/pilots/{pilot_id}/log")
async def pilot_log(
    request: Request, pilot_id: str, context: AppContext = Depends(get_context)
) -> Response:
    claims = await page_claims(request, context)
    if claims is None:
        return login_redirect(request)
    files = logs.LogFiles(context.store)
    try:
        piece = await run_in_threadpool(
            logs.read_pilot_log, context.db, files, claims, pilot_id, 0, jobpage.LOG_TAIL_BYTES * 4
        )
    except NotFound as exc:
        return page(request, context, "error.html", claims, status_code=404, message=exc.message)
    text = piece.data.decode("utf-8", errors="replace")
    return page(
        request, context, "pilot_log.html", claims, active="pilots", pilot_id=pilot_id,
        text=text, size=piece.size_bytes,
    )  # fmt: skip


@router.get("/web/accounting")
async def accounting(request: Request, context: AppContext = Depends(get_context)) -> Response:
    claims = await page_claims(request, context)
    if claims is None:
        return login_redirect(request)
    return page(request, context, "accounting.html", claims, active="accounting")
