"""``GET /accounting/...``: the JSON behind every plot of the portal's Accounting page."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from coordinator.api.deps import AppContext, get_context, require_user
from coordinator.logic import accounting
from coordinator.logic.auth import TokenClaims
from protocol import API_PREFIX

router = APIRouter(prefix=f"{API_PREFIX}/accounting", tags=["accounting"])

DAYS = Query(1, ge=1, le=accounting.MAX_DAYS, description="The window: the last N days")


@router.get("/final-statuses")
async def final_statuses(
    days: int = DAYS,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> accounting.HourlySeries:
    """Jobs reaching Done, Failed and Killed per hour: ``{bucket_s, buckets, series}``."""
    return await run_in_threadpool(accounting.final_statuses, context.db, claims, days)


@router.get("/running-by-site")
async def running_by_site(
    days: int = DAYS,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> accounting.HourlySeries:
    """Jobs running at the end of each hour, per site: ``{bucket_s, buckets, series}``."""
    return await run_in_threadpool(accounting.running_by_site, context.db, claims, days)


@router.get("/cpu-efficiency")
async def cpu_efficiency(
    by: str = Query("site", description="site or owner"),
    days: int = DAYS,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> accounting.Efficiency:
    """CPU time / (payload wall time x cores) of the jobs finished in the window."""
    return await run_in_threadpool(accounting.cpu_efficiency, context.db, claims, days, by)


@router.get("/failures")
async def failures(
    days: int = DAYS,
    claims: TokenClaims = Depends(require_user),
    context: AppContext = Depends(get_context),
) -> accounting.Failures:
    """Failed jobs per minor status and site, most frequent first."""
    return await run_in_threadpool(accounting.failures, context.db, claims, days)
