"""A registered pilot reporting that it stopped (or resumed) taking work, and why."""

from __future__ import annotations

import json
import logging

from coordinator.logic.auth import TokenClaims
from coordinator.logic.pilots import own_pilot
from coordinator.store import pilots as pilot_store
from coordinator.store.database import Database
from protocol import STOP_CAUSES, PilotStateUpdate

logger = logging.getLogger(__name__)


def update_state(
    db: Database, claims: TokenClaims, pilot_id: str, update: PilotStateUpdate
) -> None:
    """Record ``accepting_work`` and the reason; the latest check results when sent.

    A pilot that does not accept work is never given a job (``match`` answers nothing).
    """
    with db.write() as conn:
        own_pilot(conn, claims, pilot_id)
        checks = json.dumps([c.to_dict() for c in update.checks], default=str)
        pilot_store.set_pilot_state(
            conn,
            pilot_id,
            accepting_work=update.accepting_work,
            refuse_reason=update.reason,
            checks=checks if update.checks else None,
            stop_cause=update.cause if update.cause in STOP_CAUSES else "",
        )
    logger.info(
        "pilot %s %s work: %s",
        pilot_id,
        "accepts" if update.accepting_work else "refuses",
        update.reason or "no reason given",
    )
