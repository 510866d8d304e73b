"""``/health``: is the coordinator up and its database reachable? No token needed."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import text

from coordinator.api.deps import AppContext, get_context
from protocol import __version__

router = APIRouter(tags=["health"])


@router.get("/health")
def health(context: AppContext = Depends(get_context)) -> dict[str, str]:
    with context.db.read() as conn:
        conn.execute(text("SELECT 1"))
    return {"status": "ok", "version": __version__}
