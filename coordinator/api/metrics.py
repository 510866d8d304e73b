"""``/metrics`` for Prometheus. Open by default (scrapers usually carry no token);
``metrics_access = admin`` asks for an admin token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from coordinator.api.deps import AppContext, get_claims, get_context, require_admin
from coordinator.metrics import CONTENT_TYPE, exposition, snapshot

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, context: AppContext = Depends(get_context)) -> Response:
    if context.settings.metrics_access == "admin":
        await require_admin(await get_claims(request, context))
    # The gauges are database reads: out of the event loop.
    text = await run_in_threadpool(lambda: exposition(context.metrics, snapshot(context.db)))
    return Response(text, media_type=CONTENT_TYPE)
