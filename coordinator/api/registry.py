"""The pilot registry, read side: ``GET /pilots`` and ``GET /pilots/{pilot_id}``."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends

from coordinator.api.deps import AppContext, get_claims, get_context
from coordinator.errors import BadRequest
from coordinator.logic import registry
from coordinator.logic.auth import TokenClaims
from protocol import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["pilots"])

MAX_LISTED = 10_000


@dataclasses.dataclass(frozen=True)
class PilotList:
    pilots: list[registry.PilotInfo]


@router.get("/pilots")
def list_pilots(
    limit: int = 1000,
    claims: TokenClaims = Depends(get_claims),
    context: AppContext = Depends(get_context),
) -> PilotList:
    """Registered pilots, newest first: every pilot for admins, the VO's for others."""
    if not 1 <= limit <= MAX_LISTED:
        raise BadRequest(f"limit must be between 1 and {MAX_LISTED}")
    return PilotList(pilots=registry.list_pilots(context.db, claims, limit))


@router.get("/pilots/{pilot_id}")
def get_pilot(
    pilot_id: str,
    claims: TokenClaims = Depends(get_claims),
    context: AppContext = Depends(get_context),
) -> registry.PilotInfo:
    return registry.get_pilot(context.db, claims, pilot_id)
