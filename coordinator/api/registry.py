"""The pilot registry, read side: ``GET /pilots``, ``GET /pilots/{pilot_id}`` and why a
pilot got no job, ``GET /pilots/{pilot_id}/explain``."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends

from coordinator.api.deps import CURSOR_QUERY, LIMIT_QUERY, AppContext, get_claims, get_context
from coordinator.logic import explanations, registry
from coordinator.logic.auth import TokenClaims
from coordinator.logic.paging import page_request
from protocol import API_PREFIX, PilotExplanation, PilotInfo, PilotList

router = APIRouter(prefix=API_PREFIX, tags=["pilots"])


@router.get("/pilots")
def list_pilots(
    limit: int = LIMIT_QUERY,
    cursor: Optional[str] = CURSOR_QUERY,
    claims: TokenClaims = Depends(get_claims),
    context: AppContext = Depends(get_context),
) -> PilotList:
    """Registered pilots, newest first, one page at a time: every pilot for admins, the
    VO's for others."""
    page = page_request(limit, cursor, registry.PILOT_CURSOR)
    found = registry.list_pilots(context.db, claims, page)
    return PilotList(pilots=found.items, next_cursor=found.next_cursor)


@router.get("/pilots/{pilot_id}")
def get_pilot(
    pilot_id: str,
    claims: TokenClaims = Depends(get_claims),
    context: AppContext = Depends(get_context),
) -> PilotInfo:
    return registry.get_pilot(context.db, claims, pilot_id)


@router.get("/pilots/{pilot_id}/explain")
def explain_pilot(
    pilot_id: str,
    claims: TokenClaims = Depends(get_claims),
    context: AppContext = Depends(get_context),
) -> PilotExplanation:
    """Why the pilot's last match request got no job (``gridpilot pilots --why``)."""
    return explanations.explain_pilot(context.db, claims, pilot_id)
