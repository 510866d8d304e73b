"""The explanations users ask for (``gridpilot explain``, ``gridpilot pilots --why``): the
facts gathered from the store, the decisions left to ``coordinator.logic.explain``.

What is read is bounded and indexed, never a scan of the jobs: the job itself; the VO's
pilots heard from within ``explain_interval_s`` (at most ``explain_max_pilots``, newest
first; an index on (vo, last_seen)), with what they registered (cores, memory, GPUs, CPU
score) and their last match request; the VO's task queues that have a job waiting (one
index seek each); the job's place in its queue (counts over that queue's index ranges
that stop at ``taskqueues.QUEUE_COUNT_LIMIT``); the owners' fair-share usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from sqlalchemy import Connection

from coordinator.logic import explain
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import stored_json, stored_mapping
from coordinator.logic.fairshare import decayed
from coordinator.logic.jobs import visible_job
from coordinator.logic.matching import Offer, request_offer
from coordinator.logic.queue_index import requirements
from coordinator.logic.registry import visible_pilot
from coordinator.settings import Settings
from coordinator.store import pilots as pilot_store
from coordinator.store import taskqueues as tq_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from coordinator.store.schema import utc_timestamp
from protocol import GpuInfo, JobExplanation, JobStatus, MatchRequest, PilotExplanation


def explain_job(
    db: Database, settings: Settings, claims: TokenClaims, job_id: int
) -> JobExplanation:
    """Why the job (one the caller may see, as for ``GET /jobs/{id}``) is not running."""
    interval_s = int(settings.explain_interval_s)
    now = datetime.now(timezone.utc)
    with db.read() as conn:
        row = visible_job(conn, claims, job_id)
        vo = str(row["vo"])
        status = JobStatus(row["status"])
        facts = explain.JobFacts(job_id=job_id, status=status, needs=requirements(row))
        nodes: list[Offer] = []
        if status is JobStatus.WAITING:
            nodes = recent_nodes(conn, vo, now, interval_s, settings.explain_max_pilots)
            facts = explain.JobFacts(
                job_id=job_id,
                status=status,
                needs=facts.needs,
                queue=_queue_place(conn, row),
                fair_share=_fair_share(conn, settings, row, now),
            )
        last_at = pilot_store.last_seen_in(conn, vo)
    return explain.explain_job(facts, nodes, interval_s, last_at)


def explain_pilot(db: Database, claims: TokenClaims, pilot_id: str) -> PilotExplanation:
    """Why the pilot (one the caller may see, as for ``GET /pilots/{id}``) got no job."""
    with db.read() as conn:
        row = visible_pilot(conn, claims, pilot_id)
        last = last_match(row)
        offer = None
        if last is not None:
            offer = request_offer(str(row["vo"]), row, last[2])
        queues = [
            (int(queue["task_queue_id"]), str(queue["owner"]), requirements(queue))
            for queue in tq_store.queues_with_waiting(conn, str(row["vo"]))
        ]
    facts = explain.PilotFacts(
        pilot_id=pilot_id,
        accepting_work=bool(row["accepting_work"]),
        stop_cause=str(row["stop_cause"] or ""),
        refuse_reason=str(row["refuse_reason"] or ""),
        last_match_at=last[0] if last else "",
        last_match_jobs=last[1] if last else 0,
        offer=offer,
    )
    return explain.explain_pilot(facts, queues)


def last_match(pilot: Mapping[Any, Any]) -> Optional[tuple[str, int, MatchRequest]]:
    """(when, jobs given, the request) of the pilot's last match request, if it made one
    (``matchmaker.last_match_record`` wrote it)."""
    record = stored_mapping(pilot["last_match"])
    if not isinstance(record.get("request"), dict):
        return None
    try:
        request = MatchRequest.from_dict(record["request"])
    except ValueError:
        return None
    return str(record.get("at", "")), int(record.get("jobs") or 0), request


def recent_nodes(
    conn: Connection, vo: str, now: datetime, interval_s: int, limit: int
) -> list[Offer]:
    """The whole nodes of the VO's pilots that asked for work within ``interval_s``."""
    since = utc_timestamp(now - timedelta(seconds=interval_s))
    nodes = []
    for pilot in pilot_store.recent_pilots(conn, vo, since, limit):
        last = last_match(pilot)
        asked_at = last[0] if last else str(pilot["registered_at"])
        if pilot["accepting_work"] and asked_at >= since:
            nodes.append(node_offer(pilot, last[2] if last else None, now))
    return nodes


def node_offer(pilot: Mapping[Any, Any], request: Optional[MatchRequest], now: datetime) -> Offer:
    """A pilot's node as a whole (every core, all its memory and GPUs), with its time left
    as of ``now``: what could run there once its current jobs end."""
    # A pilot that never asked is taken as registered; one that asks without counting
    # its GPUs (an older pilot) is matched on the GPU tag: so is its node here.
    counted = request is None or request.gpus_free is not None
    offer = request_offer(str(pilot["vo"]), pilot, request or MatchRequest())
    gpus = _registered_gpus(pilot["gpus"]) if counted else None
    return Offer(
        vo=offer.vo,
        site=offer.site,
        platform=offer.platform,
        tags=offer.tags,
        cores_free=int(pilot["cores"] or 1),
        cores_total=int(pilot["cores"] or 1),
        memory_free_mb=int(pilot["memory_mb"] or 0),
        time_left_s=_time_left_now(pilot, now),
        container_runtimes=offer.container_runtimes,
        gpus=gpus,
        cpu_score=offer.cpu_score,
    )


def _registered_gpus(text: str) -> tuple[GpuInfo, ...]:
    found = stored_json(text, [])
    gpus = []
    for item in found if isinstance(found, list) else []:
        try:
            gpus.append(GpuInfo.from_dict(item))
        except (TypeError, ValueError):
            continue
    return tuple(gpus)


def _time_left_now(pilot: Mapping[Any, Any], now: datetime) -> Optional[int]:
    """Its time left, from its last match request (else its registration), less the time
    gone since."""
    last = last_match(pilot)
    said_at, said = str(pilot["registered_at"]), pilot["time_left_s"]
    if last is not None and last[2].time_left_s is not None:
        said_at, said = last[0], last[2].time_left_s
    if said is None:
        return None
    try:
        gone_s = (now - datetime.fromisoformat(said_at)).total_seconds()
    except ValueError:
        gone_s = 0.0
    return max(0, int(said - max(0.0, gone_s)))


def _queue_place(conn: Connection, row: Row) -> Optional[explain.QueuePlace]:
    if row["task_queue_id"] is None:
        return None
    tq_id = int(row["task_queue_id"])
    ahead, waiting = tq_store.queue_place(conn, tq_id, int(row["priority"]), int(row["job_id"]))
    limit = tq_store.QUEUE_COUNT_LIMIT
    return explain.QueuePlace(
        task_queue_id=tq_id,
        position=ahead + 1,
        waiting=waiting,
        count_limit=limit if max(ahead, waiting) >= limit else 0,
    )


def _fair_share(
    conn: Connection, settings: Settings, row: Row, now: datetime
) -> explain.FairShareStanding:
    vo = str(row["vo"])
    owners = {str(queue["owner"]) for queue in tq_store.queues_with_waiting(conn, vo)}
    now_s = now.timestamp()
    usage = {
        owner: decayed(used, now_s - at_s, settings.fair_share_half_life_s)
        for owner, (used, at_s) in tq_store.usage_of_vo(conn, vo).items()
    }
    weights = settings.fair_share_weights.get(vo, {})
    return explain.fair_share_standing(
        str(row["owner"]), str(row["owner_group"]), owners, usage, weights
    )
