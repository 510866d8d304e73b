"""The match path: give a pilot up to ``n`` Waiting jobs that fit what it has free.

One match, in one write transaction:

1. take the task queues of the pilot's VO from the in-memory index
   (``coordinator.logic.queue_index``) and keep those whose requirements the pilot's
   remaining offer meets (``matching.fits``): O(queues), not O(jobs), and no SQL;
2. among the owners of those queues pick the one furthest below its fair share
   (``fairshare.next_owner``), and work out how many jobs it gets before another owner's
   turn or before the offer is used up, sized for the largest job of its fitting queues;
3. claim that many of its Waiting jobs, highest ``Priority`` first then oldest, in one
   statement (``taskqueues.claim_waiting``: a conditional ``UPDATE ... RETURNING``, so a
   job goes to one pilot only, whatever the index believed);
4. give each claimed job its cores (and GPUs, by id, out of those offered), subtract them
   and its memory from the offer, add them to the owner's usage, and repeat until ``n``
   jobs, no cores left, or nothing fits.

The pilot's ``slot_policy`` narrows step 2 to the fitting queues it wants first
(``matching.policy_choice``), stepping on when those are dry. The reply says when a job
wider than the pilot could take now waits (``wider_job_cores``), and the pilot's row keeps
its last request and what it got (``gridpilot pilots --why``).

A claim that comes back short tells the index those queues are dry; a match that finds
nothing reads the VO's queues again once before answering "no job".

A match is idempotent by the pilot's ``request_id``: the jobs it claimed are recorded in the
same transaction, and a retry with that id (its first reply was cut or lost) is given the
same jobs again, those still Matched to this pilot, with the cores and GPUs they were given
then, and claims nothing new.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from sqlalchemy import Connection

from coordinator.errors import BadRequest, CoordinatorError
from coordinator.logic import fairshare
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import stored_mapping
from coordinator.logic.description import job_fields
from coordinator.logic.matching import (
    Offer,
    Requirements,
    after_taking,
    cores_to_give,
    fits,
    gpus_for,
    policy_choice,
    request_offer,
    wider_widths,
)
from coordinator.logic.pilots import check_request_id, owned
from coordinator.logic.queue_index import IndexedQueue, QueueIndex
from coordinator.logic.taskqueues import remove_if_done
from coordinator.metrics import Metrics
from coordinator.settings import Settings
from coordinator.store import jobs as job_store
from coordinator.store import pilots as pilot_store
from coordinator.store import requests as request_store
from coordinator.store import taskqueues as tq_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from coordinator.store.schema import utc_timestamp
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
    index: QueueIndex | None = None,
) -> MatchReply:
    """Claim up to ``request.n`` Waiting jobs that fit; each goes to this pilot only.

    ``index``: the app's task-queue index (a fresh one, loaded from the database, if None).
    """
    if request.n < 1 or request.cores_free < 0 or request.memory_free_mb < 0:
        raise BadRequest("n must be at least 1; free cores and memory cannot be negative")
    request_id = check_request_id(request.request_id)
    started_s = time.perf_counter()
    assignments: list[JobAssignment] = []
    wider = 0
    with db.write(pipelined=True) as conn:
        # Sent together, run in this order, read after (one round trip in a pipelined
        # transaction): the pilot, locked first (PostgreSQL: the same match retried
        # through another replica while this one is in flight waits here, then finds its
        # record and replays it), that record, the owners' usage.
        pilot_read = pilot_store.get_pilot_later(conn, pilot_id, lock=True)
        earlier_read = request_store.recall_later(conn, pilot_id, request_id, request_store.MATCH)
        usage_read = tq_store.usage_of_vo_later(conn, claims.vo)
        pilot = owned(pilot_read(), claims, pilot_id)
        earlier = earlier_read()
        if earlier is not None:
            assignments = _replay(conn, pilot_id, earlier, settings.match_timeout_s)
            logger.info("pilot %s: match %s retried, same jobs", pilot_id, request_id)
        elif pilot["accepting_work"]:
            offer = pilot_offer(claims, pilot, request)
            round_ = MatchRound(
                conn, settings, pilot_id, offer, index, request.slot_policy, usage_read()
            )
            claimed = round_.claim(min(request.n, MAX_JOBS_PER_MATCH))
            assignments = _deliverable(conn, claimed, settings.match_timeout_s)
            wider = round_.wider_waiting(int(pilot["memory_mb"] or 0))
        last_match = last_match_record(request, len(assignments))
        if request_id and earlier is None:
            record = [_replay_entry(a) for a in assignments]
            request_store.remember(
                conn, pilot_id, request_id, request_store.MATCH, record, last_match=last_match
            )
        else:
            pilot_store.touch_pilot(conn, pilot_id, last_match)
    metrics.observe_match(time.perf_counter() - started_s, len(assignments))
    if not assignments:
        return MatchReply(retry_after_s=settings.match_retry_after_s, wider_job_cores=wider)
    logger.info("pilot %s matched jobs %s", pilot_id, [a.job_id for a in assignments])
    return MatchReply(jobs=assignments, wider_job_cores=wider)


_RECORD = msgspec.json.Encoder()


def last_match_record(request: MatchRequest, jobs: int) -> str:
    """What a pilot's row keeps of its last match request (``pilots --why`` reads it):
    JSON of ``request.to_dict()``'s shape, by msgspec (2.8 us; json of ``to_dict``, 23)."""
    record = {"at": utc_timestamp(), "jobs": jobs, "request": request}
    return _RECORD.encode(record).decode()


def _replay_entry(assignment: JobAssignment) -> list[Any]:
    """What a match request id keeps of one job it gave: enough to give it again as it was
    (its cores, its GPUs by id, whole node or not)."""
    return [assignment.job_id, assignment.cores, assignment.gpus, assignment.whole_node]


def _replay(
    conn: Connection, pilot_id: str, record: list[list[Any]], lease_s: float
) -> list[JobAssignment]:
    """The jobs an earlier match with the same request id claimed, those still Matched to
    this pilot (one the sweeper took back meanwhile is not given again), each with the
    cores and GPUs it was given then (``[job_id, cores]`` entries, kept by a coordinator
    before GPUs, replay without GPUs)."""
    given = {
        int(entry[0]): (
            int(entry[1]),
            tuple(str(gpu) for gpu in (entry[2] if len(entry) > 2 else ())),
            bool(entry[3]) if len(entry) > 3 else False,
        )
        for entry in record
    }
    # Whole rows (descriptions included, a reply needs them); a match has at most 64.
    rows = [row for row in map(functools.partial(job_store.get_job, conn), given) if row]
    held = [
        row
        for row in rows
        if row["status"] == JobStatus.MATCHED.value and row["pilot_id"] == pilot_id
    ]
    return _deliverable(conn, [Claimed(row, *given[int(row["job_id"])]) for row in held], lease_s)


def pilot_offer(claims: TokenClaims, pilot: Row, request: MatchRequest) -> Offer:
    """What the pilot offers now: the request, completed by what it said at registration."""
    return request_offer(claims.vo, pilot, request)


class MatchRound:
    """One match request's walk over the task queues of a VO."""

    def __init__(
        self,
        conn: Connection,
        settings: Settings,
        pilot_id: str,
        offer: Offer,
        index: QueueIndex | None = None,
        slot_policy: str = "",
        recorded_usage: Mapping[str, tuple[float, float]] | None = None,
    ):
        self.conn = conn
        self.pilot_id = pilot_id
        self.offer = offer
        self.index = index or QueueIndex()
        self.slot_policy = slot_policy
        self.weights = settings.fair_share_weights.get(offer.vo, {})
        self.half_life_s = settings.fair_share_half_life_s
        self.now_s = time.time()
        self.now = utc_timestamp()
        recorded = (
            tq_store.usage_of_vo(conn, offer.vo) if recorded_usage is None else recorded_usage
        )
        self.usage = {
            owner: fairshare.decayed(used, self.now_s - at_s, self.half_life_s)
            for owner, (used, at_s) in recorded.items()
        }
        self.used_by: set[str] = set()
        self.exhausted: set[int] = set()
        self.given_cores = 0
        """The widest job of this round, in cores."""

    def claim(self, wanted: int) -> list[Claimed]:
        """Claim up to ``wanted`` jobs; returns each job row with the cores and GPUs it
        gets."""
        claimed: list[Claimed] = []
        reloaded = False
        while len(claimed) < wanted and self.offer.cores_free > 0:
            got = self._claim_some(wanted - len(claimed))
            if got:
                claimed += got
            elif reloaded:
                break
            else:
                self.index.reload(self.conn, self.offer.vo)
                reloaded = True
        self._finish()
        return claimed

    def _claim_some(self, room: int) -> list[Claimed]:
        """Jobs of the next owner due among the queues the slot policy wants first, claimed
        in one statement; the policy's next step when those are dry; [] if none is left."""
        while True:
            fitting = [
                (queue, queue.needs)
                for queue in self.index.queues(self.conn, self.offer.vo)
                if queue.task_queue_id not in self.exhausted and fits(queue.needs, self.offer)
            ]
            if not fitting:
                return []
            by_owner: dict[str, list[IndexedQueue]] = {}
            for queue, _ in policy_choice(fitting, self.offer, self.slot_policy):
                by_owner.setdefault(queue.owner, []).append(queue)
            got = self._claim_of_owners(by_owner, room)
            if got:
                return got

    def _claim_of_owners(self, by_owner: dict[str, list[IndexedQueue]], room: int) -> list[Claimed]:
        """Claim for the owner furthest below its share that still has a Waiting job in
        its ``by_owner`` queues (those found dry are marked exhausted)."""
        while by_owner:
            owner = fairshare.next_owner(by_owner, self.usage, self.weights)
            queues = by_owner.pop(owner)
            count = self._batch_size(owner, queues, list(by_owner), room)
            ids = [queue.task_queue_id for queue in queues]
            rows = tq_store.claim_waiting(
                self.conn,
                ids,
                count,
                pilot_id=self.pilot_id,
                site=self.offer.site,
                now=self.now,
                source="Matcher",
            )
            if len(rows) < count:
                # Every queue gave all the Waiting jobs it had (on PostgreSQL: all that no
                # claim in flight elsewhere held): none is left to take now. A hint only:
                # the index forgets it at its next reload.
                self.exhausted.update(ids)
                self.index.mark_dry(self.offer.vo, ids)
            if rows:
                needs = {queue.task_queue_id: queue.needs for queue in queues}
                return [self._take(row, needs[int(row["task_queue_id"])]) for row in rows]
        return []

    def _batch_size(
        self, owner: str, queues: list[IndexedQueue], others: list[str], room: int
    ) -> int:
        """How many jobs ``owner`` gets in one claim: as long as every one of its fitting
        queues would still fit what is left after that many of its largest jobs (the most
        cores and the most memory any of them takes), and until fair share would turn to
        another owner."""
        counted = self.offer.gpus is not None  # else GPU jobs match on the tag, get no ids
        if any(queue.needs.whole_node or (counted and queue.needs.gpus) for queue in queues):
            return 1  # which GPUs a job gets depends on the ones before it: one at a time
        offer, usage, count = self.offer, dict(self.usage), 0
        while count < room and all(fits(queue.needs, offer) for queue in queues):
            cores = max(cores_to_give(queue.needs, offer) for queue in queues)
            largest = dataclasses.replace(
                queues[0].needs,
                cores=cores,
                max_cores=cores,
                max_ram_mb=max(queue.needs.max_ram_mb for queue in queues),
            )
            count += 1
            usage[owner] = usage.get(owner, 0.0) + cores
            offer = after_taking(offer, largest)
            if others and fairshare.next_owner([owner, *others], usage, self.weights) != owner:
                break
        return max(1, count)

    def _take(self, row: Row, needs: Requirements) -> Claimed:
        cores = cores_to_give(needs, self.offer)
        self.given_cores = max(self.given_cores, cores)
        gpus = gpus_for(needs, self.offer) or ()
        self.offer = after_taking(self.offer, needs, gpus)
        owner = str(row["owner"])
        self.usage[owner] = self.usage.get(owner, 0.0) + cores
        self.used_by.add(owner)
        return Claimed(row, cores, tuple(gpu.id for gpu in gpus), needs.whole_node)

    def wider_waiting(self, memory_mb: int) -> int:
        """``MatchReply.wider_job_cores``: the fewest cores of the waiting jobs that would
        fit this pilot's node (``memory_mb`` in all) but neither its cores free now nor the
        widest job this round gave; from the index, and only when some queue is that wide,
        one statement to see that it has a job waiting."""
        widths = wider_widths(
            {
                queue.task_queue_id: queue.needs
                for queue in self.index.queues(self.conn, self.offer.vo)
                if queue.task_queue_id not in self.exhausted
            },
            self.offer,
            memory_mb,
            self.given_cores,
        )
        if not widths:
            return 0
        waiting = tq_store.waiting_among(self.conn, widths)
        return min((widths[tq_id] for tq_id in waiting), default=0)

    def _finish(self) -> None:
        tq_store.save_usage(
            self.conn, self.offer.vo, {o: self.usage[o] for o in self.used_by}, self.now_s
        )
        for tq_id in self.exhausted:
            remove_if_done(self.conn, tq_id)


@dataclasses.dataclass(frozen=True)
class Claimed:
    """A job claimed for the pilot, with what of its offer the job gets."""

    row: Row
    cores: int
    gpus: tuple[str, ...] = ()
    whole_node: bool = False


def _deliverable(conn: Connection, claimed: list[Claimed], lease_s: float) -> list[JobAssignment]:
    """The claimed jobs as assignments. A job whose stored description cannot run (stored
    before a check that now refuses it) is failed instead: one bad row never costs the
    pilot the other jobs of its reply, nor leaves them Matched and undelivered."""
    assignments = []
    ids = [job.row["job_id"] for job in claimed]
    if all(tq_store.INPUTS in job.row for job in claimed):  # read with the claim
        inputs = {int(job.row["job_id"]): list(job.row[tq_store.INPUTS]) for job in claimed}
    else:
        inputs = job_store.sandboxes_of_jobs(conn, ids, job_store.IN)
    for job in claimed:
        try:
            job_inputs = inputs[int(job.row["job_id"])]
            assignments.append(_assignment(conn, job, job_inputs, lease_s=lease_s))
        except CoordinatorError as exc:
            _fail_unrunnable(conn, job.row, exc)
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


def _assignment(
    conn: Connection,
    job: Claimed,
    inputs: list[str] | None = None,
    *,
    lease_s: float = 0.0,
) -> JobAssignment:
    """The job as the pilot gets it; ``inputs``: its input sandboxes, if read already;
    ``lease_s``: how long it stays the pilot's before it is reported Running."""
    row = job.row
    description = stored_mapping(row["description"])
    fields = job_fields(description)
    if inputs is None:
        inputs = job_store.sandboxes_of(conn, row["job_id"], job_store.IN)
    return JobAssignment(
        job_id=row["job_id"],
        executable=fields.executable,
        arguments=list(fields.arguments),
        stdout=fields.stdout,
        stderr=fields.stderr,
        input_sandboxes=inputs,
        output_sandbox=list(fields.output_sandbox),
        cores=job.cores,
        memory_mb=row["max_ram_mb"],
        wall_time_s=row["wall_time_s"],
        cpu_time_s=row["cpu_time_s"],
        container=row["container"],
        description=description,
        lease_s=lease_s,
        gpus=list(job.gpus),
        whole_node=job.whole_node,
    )
