"""Why a job waits, and why a pilot got no job: pure decisions over facts already known.

For a job: each of its requirements against the nodes of the pilots seen lately (their whole
node, as HTCondor's ``-better-analyze`` looks at a partitionable slot: what the node has,
not what happens to be free at this instant), which requirement alone excludes every one of
them, its place in its task queue and its owner's place in the VO's fair share. For a pilot:
its last match request against the task queues with jobs waiting, nearest misses first.
The I/O around these (which pilots, which queues, counts) is ``coordinator.logic.explaining``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

from coordinator.logic import gpus as gpu_rules
from coordinator.logic.fairshare import share_order
from coordinator.logic.matching import CHECKS, Offer, Requirements, failures
from protocol import (
    FairShareStanding,
    JobExplanation,
    JobStatus,
    PilotExplanation,
    QueueMiss,
    RequirementCheck,
)

NEAREST_SHOWN = 5


def wanted(job: Requirements) -> dict[str, str]:
    """What the job asks of each requirement, as text ("" for nothing)."""
    cores = f"{job.cores}" if job.cores == job.max_cores else f"{job.cores}-{job.max_cores}"
    times = [
        f"{label} {seconds} s"
        for label, seconds in (("CPUTime", job.cpu_time_s), ("WallTime", job.wall_time_s))
        if seconds is not None
    ]
    gpus = ""
    if job.gpus:
        gpus = gpu_rules.describe_needs(
            job.gpus, job.gpu_memory_mb, job.gpu_capability, job.gpu_models
        )
    return {
        "vo": job.vo,
        "site": ", ".join(sorted(job.sites)),
        "banned_sites": ", ".join(sorted(job.banned_sites)),
        "platform": job.platform,
        "tags": ", ".join(sorted(job.tags)),
        "cores": "whole node" if job.whole_node else cores,
        "memory": f"{job.max_ram_mb} MB" if job.max_ram_mb else "",
        "gpus": gpus,
        "cpu_time": ", ".join(times),
        "cpu_score": f">= {job.min_cpu_score:g}" if job.min_cpu_score else "",
        "container": job.container,
    }


def requirement_checks(job: Requirements, nodes: Sequence[Offer]) -> list[RequirementCheck]:
    """Each requirement with the number of ``nodes`` meeting it."""
    asked = wanted(job)
    checks = []
    for name, meets in CHECKS:
        count = sum(1 for node in nodes if meets(job, node))
        checks.append(
            RequirementCheck(
                name=name,
                wanted=asked[name],
                pilots_meeting=count,
                excludes_all=bool(nodes) and count == 0,
            )
        )
    return checks


@dataclasses.dataclass(frozen=True)
class QueuePlace:
    task_queue_id: int
    position: int
    """1: the next job of the queue."""
    waiting: int
    count_limit: int = 0
    """The counts stopped at this many (0: they are exact)."""


def fair_share_standing(
    owner: str,
    group: str,
    owners_waiting: Iterable[str],
    usage: Mapping[str, float],
    weights: Mapping[str, float],
) -> FairShareStanding:
    """Where ``owner`` stands among the owners with jobs waiting (1: served first)."""
    order = share_order(set(owners_waiting) | {owner}, usage, weights)
    return FairShareStanding(
        owner=owner,
        group=group,
        position=order.index(owner) + 1,
        owners=len(order),
        usage=round(usage.get(owner, 0.0), 3),
        weight=weights.get(owner, 1.0),
    )


@dataclasses.dataclass(frozen=True)
class JobFacts:
    """What is known of the job being explained."""

    job_id: int
    status: JobStatus
    needs: Requirements
    queue: Optional[QueuePlace] = None
    fair_share: Optional[FairShareStanding] = None


def explain_job(
    job: JobFacts, nodes: Sequence[Offer], interval_s: int, last_pilot_at: str
) -> JobExplanation:
    """Why ``job`` is not running, against the ``nodes`` of the pilots seen lately."""
    if job.status is not JobStatus.WAITING:
        return JobExplanation(
            job_id=job.job_id,
            status=job.status,
            summary=f"the job is {job.status.value}, not waiting for a pilot",
            interval_s=interval_s,
            last_pilot_at=last_pilot_at,
        )
    checks = requirement_checks(job.needs, nodes)
    meeting_all = sum(1 for node in nodes if not failures(job.needs, node))
    excluded_by = [check.name for check in checks if check.excludes_all]
    return JobExplanation(
        job_id=job.job_id,
        status=job.status,
        summary=_job_summary(job, nodes, checks, meeting_all, interval_s),
        interval_s=interval_s,
        pilots_seen=len(nodes),
        pilots_meeting_all=meeting_all,
        requirements=checks,
        excluded_by=excluded_by,
        task_queue_id=job.queue.task_queue_id if job.queue else None,
        queue_position=job.queue.position if job.queue else None,
        queue_waiting=job.queue.waiting if job.queue else 0,
        queue_count_limit=job.queue.count_limit if job.queue else 0,
        fair_share=job.fair_share,
        last_pilot_at=last_pilot_at,
    )


def _minutes(interval_s: int) -> str:
    minutes = interval_s / 60
    return f"{minutes:g} minute{'s' if minutes != 1 else ''}"


def _job_summary(
    job: JobFacts,
    nodes: Sequence[Offer],
    checks: Sequence[RequirementCheck],
    meeting_all: int,
    interval_s: int,
) -> str:
    if not nodes:
        return (
            f"no pilot of VO {job.needs.vo} has asked for work in the last {_minutes(interval_s)}"
        )
    excluded = [check for check in checks if check.excludes_all]
    if excluded:
        named = "; ".join(
            f"{check.name} ({check.wanted})" if check.wanted else check.name for check in excluded
        )
        seen = f"{len(nodes)} pilot(s) seen in the last {_minutes(interval_s)}"
        return f"none of the {seen} meets: {named}"
    if not meeting_all:
        return (
            f"each requirement is met by some of the {len(nodes)} pilot(s) seen, "
            "but no pilot meets them all together"
        )
    parts = [f"{meeting_all} of {len(nodes)} pilot(s) seen could run it: it waits for its turn"]
    if job.queue is not None:
        parts.append(f"number {job.queue.position} of {job.queue.waiting} in its task queue")
    if job.fair_share is not None and job.fair_share.owners > 1:
        share = job.fair_share
        parts.append(f"its owner is {share.position} of {share.owners} by fair share")
    return "; ".join(parts)


def failure_detail(name: str, job: Requirements, offer: Offer) -> str:
    """One line on a requirement ``offer`` fails: what is needed, what was offered."""
    if name == "vo":
        return f"vo: jobs of {job.vo}, pilot of {offer.vo}"
    if name == "site":
        return f"site: runs only at {', '.join(sorted(job.sites))}; pilot at {offer.site}"
    if name == "banned_sites":
        return f"banned_sites: bans {offer.site}"
    if name == "platform":
        return f"platform: needs {job.platform}, pilot has {offer.platform or 'none'}"
    if name == "tags":
        return f"tags: needs {', '.join(sorted(job.tags - offer.tags))}"
    if name == "cores":
        return _cores_detail(job, offer)
    if name == "memory":
        return f"memory: needs {job.max_ram_mb} MB, {offer.memory_free_mb} MB free"
    if name == "gpus":
        free = "uncounted" if offer.gpus is None else str(len(offer.gpus))
        needs = wanted(job)["gpus"]
        return f"gpus: needs {needs}; {free} free, not enough of them qualify"
    if name == "cpu_time":
        return f"cpu_time: needs {wanted(job)['cpu_time']}, {offer.time_left_s} s left"
    if name == "cpu_score":
        return f"cpu_score: needs >= {job.min_cpu_score:g}, node scored {offer.cpu_score:g}"
    return "container: needs a container runtime, the pilot offers none"


def _cores_detail(job: Requirements, offer: Offer) -> str:
    if job.whole_node:
        return f"cores: needs the whole node, {offer.cores_free} of {offer.node_cores} free"
    if offer.min_cores and job.max_cores < offer.min_cores:
        return f"cores: the pilot asked for jobs of at least {offer.min_cores} cores"
    return f"cores: needs {wanted(job)['cores']}, {offer.cores_free} free"


@dataclasses.dataclass(frozen=True)
class PilotFacts:
    """What is known of the pilot being explained."""

    pilot_id: str
    accepting_work: bool
    stop_cause: str = ""
    refuse_reason: str = ""
    last_match_at: str = ""
    last_match_jobs: int = 0
    offer: Optional[Offer] = None
    """Its last match request, as an offer (None: it never asked)."""


def explain_pilot(
    pilot: PilotFacts, queues: Sequence[tuple[int, str, Requirements]]
) -> PilotExplanation:
    """Why ``pilot``'s last request got nothing, against the VO's ``queues`` with jobs
    waiting (id, owner, requirements)."""

    def answer(cause: str, summary: str, nearest: Sequence[QueueMiss] = ()) -> PilotExplanation:
        return PilotExplanation(
            pilot_id=pilot.pilot_id,
            cause=cause,
            summary=summary,
            accepting_work=pilot.accepting_work,
            last_match_at=pilot.last_match_at,
            last_match_jobs=pilot.last_match_jobs,
            queues=len(queues),
            nearest=list(nearest),
        )

    if not pilot.accepting_work:
        cause = pilot.stop_cause or "not_accepting"
        return answer(cause, f"it takes no work: {pilot.refuse_reason or 'no reason given'}")
    if pilot.offer is None:
        return answer("never_asked", "it has not asked for a job yet")
    if pilot.last_match_jobs:
        return answer("matched", f"its last request got {pilot.last_match_jobs} job(s)")
    if not queues:
        return answer("no_waiting_jobs", f"no job of VO {pilot.offer.vo} is waiting")
    misses = nearest_misses(pilot.offer, queues)
    if not misses or not misses[0].failed:
        return answer(
            "fits_now",
            "a task queue fits its last request now: jobs arrived since, or other pilots "
            "took them first",
        )
    return answer("no_queue_fits", _pilot_summary(misses, len(queues)), misses[:NEAREST_SHOWN])


def nearest_misses(
    offer: Offer, queues: Sequence[tuple[int, str, Requirements]]
) -> list[QueueMiss]:
    """Every queue with the requirements ``offer`` fails, the fewest failures first."""
    misses = []
    for task_queue_id, owner, needs in queues:
        failed = failures(needs, offer)
        misses.append(
            QueueMiss(
                task_queue_id=task_queue_id,
                owner=owner,
                failed=failed,
                details=[failure_detail(name, needs, offer) for name in failed],
            )
        )
    return sorted(misses, key=lambda miss: (len(miss.failed), miss.task_queue_id))


def _pilot_summary(misses: Sequence[QueueMiss], queue_count: int) -> str:
    counts: dict[str, int] = {}
    for miss in misses:
        for name in miss.failed:
            counts[name] = counts.get(name, 0) + 1
    common = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:3]
    reasons = ", ".join(f"{name} ({count} of {queue_count})" for name, count in common)
    return f"no task queue with waiting jobs fits its last request; they fail on {reasons}"
