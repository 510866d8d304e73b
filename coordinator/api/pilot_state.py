"""``POST /api/v1/pilots/{pilot_id}/state``: a pilot stops (or resumes) taking work."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from coordinator.api.deps import AppContext, get_context, require_pilot
from coordinator.logic import pilot_state
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import check_pilot_message
from protocol import API_PREFIX, PilotStateUpdate

router = APIRouter(prefix=API_PREFIX, tags=["pilots"])


@router.post("/pilots/{pilot_id}/state", status_code=204)
def update_pilot_state(
    pilot_id: str,
    body: PilotStateUpdate,
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> Response:
    check_pilot_message(body)
    pilot_state.update_state(context.db, claims, pilot_id, body)
    return Response(status_code=204)
