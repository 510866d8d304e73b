"""Pilot endpoints: register, match, status updates and heartbeats."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from coordinator.api.deps import AppContext, JobIdPath, get_context, pilot_id_header, require_pilot
from coordinator.logic import heartbeats, matchmaker, pilots
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import check_message, check_pilot_message
from coordinator.store.database import Database
from protocol import (
    API_PREFIX,
    Heartbeat,
    HeartbeatReply,
    JobHeartbeat,
    JobInfo,
    JobStatusUpdate,
    MatchReply,
    MatchRequest,
    PilotHeartbeat,
    PilotHeartbeatReply,
    PilotRegistration,
    RegistrationReply,
)

router = APIRouter(prefix=API_PREFIX, tags=["pilots"])


@router.post("/pilots", status_code=201)
def register_pilot(
    body: PilotRegistration,
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> RegistrationReply:
    check_pilot_message(body)
    return pilots.register(context.db, context.settings, claims, body)


@router.post("/pilots/{pilot_id}/match")
def match_jobs(
    pilot_id: str,
    body: MatchRequest,
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> MatchReply:
    check_message(body)
    return serve_match(context, context.db, claims, pilot_id, body)


@router.post("/jobs/{job_id}/status")
def update_job_status(
    job_id: JobIdPath,
    body: JobStatusUpdate,
    pilot_id: str = Depends(pilot_id_header),
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> JobInfo:
    check_message(body)
    return serve_status(context, context.db, claims, pilot_id, job_id, body)


@router.post("/jobs/{job_id}/heartbeat")
def job_heartbeat(
    job_id: JobIdPath,
    body: Heartbeat,
    pilot_id: str = Depends(pilot_id_header),
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> HeartbeatReply:
    check_message(body)
    return serve_job_heartbeat(context, context.db, claims, pilot_id, job_id, body)


@router.post("/pilots/{pilot_id}/heartbeat")
def pilot_heartbeat(
    pilot_id: str,
    body: PilotHeartbeat,
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> PilotHeartbeatReply:
    """All of a pilot's due heartbeats at once; each job's refusal is in its own result."""
    check_message(body)
    return serve_pilot_heartbeat(context, context.db, claims, pilot_id, body)


# The work of the routes above, once checked; ``coordinator.api.hotpath`` serves the same
# routes through these functions, on a ``db`` that may be its non-waiting view.


def serve_match(
    context: AppContext, db: Database, claims: TokenClaims, pilot_id: str, body: MatchRequest
) -> MatchReply:
    return matchmaker.match(
        db, context.settings, context.metrics, claims, pilot_id, body, context.queue_index
    )


def serve_status(
    context: AppContext,
    db: Database,
    claims: TokenClaims,
    pilot_id: str,
    job_id: int,
    body: JobStatusUpdate,
) -> JobInfo:
    return pilots.update_status(db, context.settings, claims, pilot_id, job_id, body)


def serve_job_heartbeat(
    context: AppContext,
    db: Database,
    claims: TokenClaims,
    pilot_id: str,
    job_id: int,
    body: Heartbeat,
) -> HeartbeatReply:
    reply = heartbeats.job_heartbeat(
        db, claims, pilot_id, JobHeartbeat(job_id=job_id, heartbeat=body)
    )
    context.metrics.count_heartbeat()
    return reply


def serve_pilot_heartbeat(
    context: AppContext, db: Database, claims: TokenClaims, pilot_id: str, body: PilotHeartbeat
) -> PilotHeartbeatReply:
    reply, renewed = heartbeats.pilot_heartbeat(db, claims, pilot_id, body)
    context.metrics.count_heartbeat(renewed, batched=True)
    return reply
