"""Pilot endpoints: register, match, status updates and heartbeats."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from coordinator.api.deps import AppContext, JobIdPath, get_context, pilot_id_header, require_pilot
from coordinator.logic import matchmaker, pilots
from coordinator.logic.auth import TokenClaims
from pilot.protocol import (
    API_PREFIX,
    Heartbeat,
    HeartbeatReply,
    JobInfo,
    JobStatusUpdate,
    MatchReply,
    MatchRequest,
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
    return pilots.register(context.db, context.settings, claims, body)


@router.post("/pilots/{pilot_id}/match")
def match_jobs(
    pilot_id: str,
    body: MatchRequest,
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> MatchReply:
    return matchmaker.match(context.db, context.settings, context.metrics, claims, pilot_id, body)


@router.post("/jobs/{job_id}/status")
def update_job_status(
    job_id: JobIdPath,
    body: JobStatusUpdate,
    pilot_id: str = Depends(pilot_id_header),
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> JobInfo:
    return pilots.update_status(context.db, context.settings, claims, pilot_id, job_id, body)


@router.post("/jobs/{job_id}/heartbeat")
def job_heartbeat(
    job_id: JobIdPath,
    body: Heartbeat,
    pilot_id: str = Depends(pilot_id_header),
    claims: TokenClaims = Depends(require_pilot),
    context: AppContext = Depends(get_context),
) -> HeartbeatReply:
    reply = pilots.heartbeat(context.db, claims, pilot_id, job_id, body)
    context.metrics.count_heartbeat()
    return reply
