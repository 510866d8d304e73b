"""The match path: give a pilot up to ``n`` Waiting jobs that fit what it has free.

One match, in one write transaction:

1. load the task queues of the pilot's VO and keep those whose requirements the pilot's
   remaining offer meets (``matching.fits``): O(queues), not O(jobs);
2. among the owners of those queues pick the one furthest below its fair share
   (``fairshare.next_owner``);
3. in that owner's queues take the Waiting job with the highest ``Priority``, oldest first,
   and claim it with a conditional UPDATE (Waiting -> Matched) that succeeds for one
   pilot only;
4. subtract its cores and memory from the offer, add its cores to the owner's usage and
   repeat until ``n`` jobs, no cores left, or nothing fits.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from coordinator.errors import BadRequest, CoordinatorError
from coordinator.logic import fairshare
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import stored_mapping
from coordinator.logic.description import job_fields
from coordinator.logic.matching import (
    ANY_SITE,
    Offer,
    Requirements,
    after_taking,
    cores_to_give,
    fits,
)
from coordinator.logic.pilots import own_pilot
from coordinator.logic.taskqueues import remove_if_done
from coordinator.metrics import Metrics
from coordinator.settings import Settings
from coordinator.store import jobs as job_store
from coordinator.store import pilots as pilot_store
from coordinator.store import taskqueues as tq_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from protocol import JobAssignment, JobStatus, MatchReply, MatchRequest

logger = logging.getLogger(__name__)

MAX_JOBS_PER_MATCH = 64
MINOR_STATUS_MAX_CHARS = 255
PREFETCH_PER_QUEUE = 16
"""How many of a queue's next jobs one look-up reads."""


def match(
    db: Database,
    settings: Settings,
    metrics: Metrics,
    claims: TokenClaims,
    pilot_id: str,
    request: MatchRequest,
) -> MatchReply:
    """Claim up to ``request.n`` Waiting jobs that fit; each goes to this pilot only."""
    if request.n < 1 or request.cores_free < 0 or request.memory_free_mb < 0:
        raise BadRequest("n must be at least 1; free cores and memory cannot be negative")
    started_s = time.perf_counter()
    assignments: list[JobAssignment] = []
    with db.write() as conn:
        pilot = own_pilot(conn, claims, pilot_id)
        pilot_store.touch_pilot(conn, pilot_id)
        if pilot["accepting_work"]:
            offer = pilot_offer(claims, pilot, request)
            round_ = MatchRound(conn, settings, pilot_id, offer)
            claimed = round_.claim(min(request.n, MAX_JOBS_PER_MATCH))
            assignments = _deliverable(conn, claimed)
    metrics.observe_match(time.perf_counter() - started_s, len(assignments))
    if not assignments:
        return MatchReply(retry_after_s=settings.match_retry_after_s)
    logger.info("pilot %s matched jobs %s", pilot_id, [a.job_id for a in assignments])
    return MatchReply(jobs=assignments)


def pilot_offer(claims: TokenClaims, pilot: Row, request: MatchRequest) -> Offer:
    """What the pilot offers now: the request, completed by what it said at registration."""
    site = request.site if request.site and request.site != ANY_SITE else pilot["site"]
    return Offer(
        vo=claims.vo,
        site=site,
        platform=request.platform or pilot["platform"],
        tags=frozenset(request.tags) | frozenset(json.loads(pilot["tags"])),
        cores_free=request.cores_free,
        memory_free_mb=request.memory_free_mb,
        time_left_s=request.time_left_s,
        container_runtimes=frozenset(request.container_runtimes),
    )


_QUEUE_REQUIREMENTS: dict[str, Requirements] = {}
_QUEUE_REQUIREMENTS_MAX = 100_000


def queue_requirements(queue: Mapping[Any, Any]) -> Requirements:
    """A task queue row's requirements, decoded once per process: a queue's ``queue_key``
    is the digest of its requirement columns, so the same key always means the same
    requirements (decoding 50 queues' JSON was a tenth of a match's CPU)."""
    key = str(queue["queue_key"])
    found = _QUEUE_REQUIREMENTS.get(key)
    if found is None:
        if len(_QUEUE_REQUIREMENTS) >= _QUEUE_REQUIREMENTS_MAX:
            _QUEUE_REQUIREMENTS.clear()
        found = _QUEUE_REQUIREMENTS[key] = requirements(queue)
    return found


def requirements(row: Mapping[Any, Any]) -> Requirements:
    """The requirements stored in a task queue (or job) row."""
    return Requirements(
        vo=row["vo"],
        sites=frozenset(json.loads(row["req_sites"])),
        banned_sites=frozenset(json.loads(row["banned_sites"])),
        platform=row["platform"],
        tags=frozenset(json.loads(row["tags"])),
        cores=row["cores"],
        max_cores=row["max_cores"],
        max_ram_mb=row["max_ram_mb"],
        cpu_time_s=row["cpu_time_s"],
        wall_time_s=row["wall_time_s"],
        container=row["container"],
    )


class MatchRound:
    """One match request's walk over the task queues of a VO."""

    def __init__(self, conn: Connection, settings: Settings, pilot_id: str, offer: Offer):
        self.conn = conn
        self.pilot_id = pilot_id
        self.offer = offer
        self.queues = [(q, queue_requirements(q)) for q in tq_store.queues_of_vo(conn, offer.vo)]
        self.weights = settings.fair_share_weights.get(offer.vo, {})
        self.half_life_s = settings.fair_share_half_life_s
        self.now_s = time.time()
        recorded = tq_store.usage_of_vo(conn, offer.vo)
        self.recorded_owners = frozenset(recorded)
        self.usage = {
            owner: fairshare.decayed(used, self.now_s - at_s, self.half_life_s)
            for owner, (used, at_s) in recorded.items()
        }
        self.used_by: set[str] = set()
        self.next_jobs: dict[int, list[Row]] = {}
        self.exhausted: set[int] = set()

    def claim(self, wanted: int) -> list[tuple[Row, int]]:
        """Claim up to ``wanted`` jobs; returns each job row with the cores it gets."""
        claimed: list[tuple[Row, int]] = []
        while len(claimed) < wanted and self.offer.cores_free > 0:
            found = self._next_job(wanted - len(claimed))
            if found is None:
                break
            row, needs = found
            if not _claim(self.conn, row, self.pilot_id, self.offer.site):
                continue  # another coordinator got it first: try the next one
            cores = cores_to_give(needs, self.offer)
            claimed.append((row, cores))
            self.offer = after_taking(self.offer, needs)
            owner = str(row["owner"])
            self.usage[owner] = self.usage.get(owner, 0.0) + cores
            self.used_by.add(owner)
        self._finish()
        return claimed

    def _next_job(self, room: int) -> tuple[Row, Requirements] | None:
        by_owner: dict[str, list[tuple[Row, Requirements]]] = {}
        for queue, needs in self.queues:
            if queue["task_queue_id"] not in self.exhausted and fits(needs, self.offer):
                by_owner.setdefault(str(queue["owner"]), []).append((queue, needs))
        while by_owner:
            owner = fairshare.next_owner(by_owner, self.usage, self.weights)
            best: tuple[Row, Requirements, int] | None = None
            candidates = by_owner.pop(owner)
            self._prefetch([int(queue["task_queue_id"]) for queue, _ in candidates], room)
            for queue, needs in candidates:
                tq_id = int(queue["task_queue_id"])
                head = self._head(tq_id)
                if head is not None and (best is None or _order(head) < _order(best[0])):
                    best = (head, needs, tq_id)
            if best is not None:
                self.next_jobs[best[2]].pop(0)
                return best[0], best[1]
        return None

    def _prefetch(self, tq_ids: list[int], room: int) -> None:
        """Read the next jobs of every queue in ``tq_ids`` that has none read yet, in one
        statement (one index look-up per queue)."""
        missing = [t for t in tq_ids if not self.next_jobs.get(t) and t not in self.exhausted]
        if missing:
            limit = min(room, PREFETCH_PER_QUEUE)
            self.next_jobs.update(tq_store.next_waiting_of(self.conn, missing, limit))

    def _head(self, tq_id: int) -> Row | None:
        """The queue's next Waiting job, or None (and the queue is marked exhausted)."""
        upcoming = self.next_jobs.get(tq_id)
        if not upcoming:
            self.exhausted.add(tq_id)
            return None
        return upcoming[0]

    def _finish(self) -> None:
        tq_store.save_usage(
            self.conn,
            self.offer.vo,
            {o: self.usage[o] for o in self.used_by},
            self.now_s,
            recorded=self.recorded_owners,
        )
        for tq_id in self.exhausted:
            remove_if_done(self.conn, tq_id)


def _order(row: Row) -> tuple[int, int]:
    """Match order inside one owner: highest priority first, then the oldest job."""
    return (-int(row["priority"]), int(row["job_id"]))


def _claim(conn: Connection, row: Row, pilot_id: str, site: str) -> bool:
    # The conditional update is the claim: it succeeds for one pilot only, even if
    # another transaction (or coordinator) saw the same job Waiting.
    return job_store.change_status(
        conn,
        row["job_id"],
        expected=JobStatus.WAITING,
        status=JobStatus.MATCHED,
        minor_status="Assigned",
        application_status=row["application_status"],
        source="Matcher",
        pilot_id=pilot_id,
        site=site,
    )


def _deliverable(conn: Connection, claimed: list[tuple[Row, int]]) -> list[JobAssignment]:
    """The claimed jobs as assignments. A job whose stored description cannot run (stored
    before a check that now refuses it) is failed instead: one bad row never costs the
    pilot the other jobs of its reply, nor leaves them Matched and undelivered."""
    assignments = []
    for row, cores in claimed:
        try:
            assignments.append(_assignment(conn, row, cores))
        except CoordinatorError as exc:
            _fail_unrunnable(conn, row, exc)
    return assignments


def _fail_unrunnable(conn: Connection, row: Row, error: CoordinatorError) -> None:
    logger.warning("job %s cannot be given to a pilot: %s", row["job_id"], error.message)
    job_store.change_status(
        conn,
        row["job_id"],
        expected=JobStatus.MATCHED,
        status=JobStatus.FAILED,
        minor_status=f"Invalid job description: {error.message}"[:MINOR_STATUS_MAX_CHARS],
        application_status=row["application_status"],
        source="Matcher",
    )


def _assignment(conn: Connection, row: Row, cores: int) -> JobAssignment:
    description = stored_mapping(row["description"])
    fields = job_fields(description)
    return JobAssignment(
        job_id=row["job_id"],
        executable=fields.executable,
        arguments=list(fields.arguments),
        stdout=fields.stdout,
        stderr=fields.stderr,
        input_sandboxes=job_store.sandboxes_of(conn, row["job_id"], job_store.IN),
        output_sandbox=list(fields.output_sandbox),
        cores=cores,
        memory_mb=row["max_ram_mb"],
        wall_time_s=row["wall_time_s"],
        cpu_time_s=row["cpu_time_s"],
        container=row["container"],
        description=description,
    )
