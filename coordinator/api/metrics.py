"""``/metrics`` for Prometheus. Open by default (scrapers usually carry no token);
``metrics_access = admin`` asks for an admin token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from coordinator.api.deps import AppContext, get_claims, get_context, require_admin
from coordinator.metrics import CONTENT_TYPE, exposition, snapshot

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
def metrics(request: Request, context: AppContext = Depends(get_context)) -> Response:
    if context.settings.metrics_access == "admin":
        require_admin(get_claims(request, context))
    text = exposition(context.metrics, snapshot(context.db))
    return Response(text, media_type=CONTENT_TYPE)
