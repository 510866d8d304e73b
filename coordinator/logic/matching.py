"""Does a job fit a pilot's offer? Pure functions over plain values, no SQL.

``Requirements`` is what a job needs, ``Offer`` what a pilot has free right now. Task
queues and fair share group requirements and order owners; they build on this.

``refusal`` (the match path: the first requirement an offer fails, in the order of
``protocol.REQUIREMENTS``, with early returns) and ``failures`` (every requirement it
fails, for explanations: one predicate per requirement in ``CHECKS``) state the same rules
twice, once for speed; ``tests/coordinator/test_matching.py`` proves them equal on
generated jobs and offers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Optional, TypeVar

from coordinator.logic import gpus as gpu_rules
from protocol import GpuInfo, MatchRequest

ANY_SITE = "ANY"
GPU_TAG = "GPU"


@dataclasses.dataclass(frozen=True)
class Requirements:
    vo: str
    sites: frozenset[str] = frozenset()
    """Sites the job may run at; empty means any."""
    banned_sites: frozenset[str] = frozenset()
    platform: str = ""
    """Empty means any platform."""
    tags: frozenset[str] = frozenset()
    cores: int = 1
    max_cores: int = 1
    max_ram_mb: int = 0
    cpu_time_s: int | None = None
    wall_time_s: int | None = None
    container: str = ""
    gpus: int = 0
    gpu_memory_mb: int = 0
    gpu_capability: str = ""
    gpu_models: frozenset[str] = frozenset()
    whole_node: bool = False
    """The job takes every core of the node, and only a node with nothing else running."""
    min_cpu_score: float = 0.0


@dataclasses.dataclass(frozen=True)
class Offer:
    vo: str
    site: str = ANY_SITE
    platform: str = ""
    tags: frozenset[str] = frozenset()
    cores_free: int = 1
    memory_free_mb: int = 0
    """0 means unknown: memory is then not a reason to refuse."""
    time_left_s: int | None = None
    container_runtimes: frozenset[str] = frozenset()
    cores_total: int = 0
    """The node's cores (0: unknown, taken as ``cores_free``)."""
    gpus: Optional[tuple[GpuInfo, ...]] = None
    """Free GPUs; None from a pilot that does not count them (matched on the GPU tag)."""
    cpu_score: float = 0.0
    """The node's CPU benchmark score (0: not measured, meets no ``MinCPUScore``)."""
    min_cores: int = 0
    """The pilot wants only jobs taking at least this many cores."""

    @property
    def node_cores(self) -> int:
        return self.cores_total or self.cores_free


def normalise_sites(site: str, sites: Iterable[str]) -> frozenset[str]:
    """The set of allowed sites from ``Site`` (a name or ANY) plus a ``sites`` list."""
    named = {s for s in sites if s and s.upper() != ANY_SITE}
    if site and site.upper() != ANY_SITE:
        named.add(site)
    return frozenset(named)


def request_offer(vo: str, pilot: Mapping[Any, Any], request: MatchRequest) -> Offer:
    """What a pilot offers with ``request``, completed by what it said at registration
    (``pilot``: its row: site, platform, tags as JSON, cores, cpu_score)."""
    site = request.site if request.site and request.site != ANY_SITE else pilot["site"]
    return Offer(
        vo=vo,
        site=site,
        platform=request.platform or pilot["platform"],
        tags=frozenset(request.tags) | frozenset(json.loads(pilot["tags"] or "[]")),
        cores_free=request.cores_free,
        memory_free_mb=request.memory_free_mb,
        time_left_s=request.time_left_s,
        container_runtimes=frozenset(request.container_runtimes),
        cores_total=int(pilot["cores"] or 0),
        gpus=None if request.gpus_free is None else tuple(request.gpus_free),
        cpu_score=float(pilot["cpu_score"] or 0.0),
        min_cores=request.min_cores,
    )


def cores_to_give(job: Requirements, offer: Offer) -> int:
    """A job with a core range gets as many free cores as it can use; a whole-node job
    gets them all."""
    if job.whole_node:
        return max(job.cores, offer.cores_free)
    return max(job.cores, min(job.max_cores, offer.cores_free))


def gpus_for(job: Requirements, offer: Offer) -> Optional[tuple[GpuInfo, ...]]:
    """The free GPUs the job would get (``()`` for a job needing none, or from a pilot
    that does not count GPUs), or None when the offer has too few that meet its needs."""
    if not job.gpus or offer.gpus is None:
        return () if not job.gpus or GPU_TAG in offer.tags else None
    return gpu_rules.choose(
        job.gpus, offer.gpus, job.gpu_memory_mb, job.gpu_capability, job.gpu_models
    )


def _cores_fit(job: Requirements, offer: Offer) -> bool:
    if job.cores > offer.cores_free:
        return False
    if job.whole_node and offer.cores_free < offer.node_cores:
        return False
    return not offer.min_cores or cores_to_give(job, offer) >= offer.min_cores


def _time_fits(job: Requirements, offer: Offer) -> bool:
    if offer.time_left_s is None:
        return True
    return all(
        needed is None or needed <= offer.time_left_s
        for needed in (job.cpu_time_s, job.wall_time_s)
    )


def refusal(job: Requirements, offer: Offer) -> str:
    """Why ``offer`` cannot take ``job`` (a name of ``protocol.REQUIREMENTS``), or ``""``."""
    if job.vo != offer.vo:
        return "vo"
    if job.sites and offer.site not in job.sites:
        return "site"
    if offer.site in job.banned_sites:
        return "banned_sites"
    if job.platform and job.platform.lower() != offer.platform.lower():
        return "platform"
    if not job.tags <= offer.tags:
        return "tags"
    if not _cores_fit(job, offer):
        return "cores"
    if job.max_ram_mb and offer.memory_free_mb and job.max_ram_mb > offer.memory_free_mb:
        return "memory"
    if job.gpus and gpus_for(job, offer) is None:
        return "gpus"
    if not _time_fits(job, offer):
        return "cpu_time"
    if job.min_cpu_score and offer.cpu_score < job.min_cpu_score:
        return "cpu_score"
    if job.container and not offer.container_runtimes:
        return "container"
    return ""


def fits(job: Requirements, offer: Offer) -> bool:
    return not refusal(job, offer)


CHECKS: tuple[tuple[str, Callable[[Requirements, Offer], bool]], ...] = (
    ("vo", lambda job, offer: job.vo == offer.vo),
    ("site", lambda job, offer: not job.sites or offer.site in job.sites),
    ("banned_sites", lambda job, offer: offer.site not in job.banned_sites),
    (
        "platform",
        lambda job, offer: not job.platform or job.platform.lower() == offer.platform.lower(),
    ),
    ("tags", lambda job, offer: job.tags <= offer.tags),
    ("cores", _cores_fit),
    (
        "memory",
        lambda job, offer: (
            not (job.max_ram_mb and offer.memory_free_mb) or job.max_ram_mb <= offer.memory_free_mb
        ),
    ),
    ("gpus", lambda job, offer: gpus_for(job, offer) is not None),
    ("cpu_time", _time_fits),
    ("cpu_score", lambda job, offer: offer.cpu_score >= job.min_cpu_score),
    ("container", lambda job, offer: not job.container or bool(offer.container_runtimes)),
)
"""One predicate per requirement, in ``protocol.REQUIREMENTS`` order."""


def failures(job: Requirements, offer: Offer) -> list[str]:
    """Every requirement of ``job`` that ``offer`` does not meet."""
    return [name for name, meets in CHECKS if not meets(job, offer)]


def after_taking(offer: Offer, job: Requirements, gpus: Sequence[GpuInfo] = ()) -> Offer:
    """What is left of ``offer`` once ``job`` runs on it with ``gpus`` (for multi-job
    matches)."""
    memory_left = offer.memory_free_mb
    if memory_left and job.max_ram_mb:
        memory_left = max(1, memory_left - job.max_ram_mb)
    taken = {gpu.id for gpu in gpus}
    left = offer.gpus
    if left is not None and taken:
        left = tuple(gpu for gpu in left if gpu.id not in taken)
    return dataclasses.replace(
        offer,
        cores_free=offer.cores_free - cores_to_give(job, offer),
        memory_free_mb=memory_left,
        gpus=left,
    )


def whole_node_offer(offer: Offer, memory_mb: int) -> Offer:
    """``offer`` as if nothing ran on the node: all its cores (and ``memory_mb``) free."""
    return dataclasses.replace(
        offer,
        cores_free=offer.node_cores,
        memory_free_mb=memory_mb or offer.memory_free_mb,
        min_cores=0,
    )


K = TypeVar("K")


def wider_widths(
    needs: Mapping[K, Requirements], offer: Offer, memory_mb: int = 0, given_cores: int = 0
) -> dict[K, int]:
    """The cores each job of ``needs`` would take, for those that would fit the node (its
    ``memory_mb`` in all) but neither what it has free now nor the width of the jobs it was
    just given (``given_cores``, the widest: a job no wider was not passed over). The node
    as a whole is worked out once, not per job (a match asks this of every queue)."""
    if offer.cores_free >= offer.node_cores:
        return {}
    empty = whole_node_offer(offer, memory_mb)
    narrower = max(offer.cores_free, given_cores)
    return {
        key: cores_to_give(job, empty) if job.whole_node else job.cores
        for key, job in needs.items()
        if (job.cores > narrower or job.whole_node) and fits(job, empty)
    }


def wider_job_cores(
    needs: Iterable[Requirements], offer: Offer, memory_mb: int = 0, given_cores: int = 0
) -> int:
    """The fewest cores of ``wider_widths``; 0 when none."""
    widths = wider_widths(dict(enumerate(needs)), offer, memory_mb, given_cores)
    return min(widths.values(), default=0)


Q = TypeVar("Q")

POLICY_STEPS: dict[str, tuple[Callable[[Requirements, Offer], bool], ...]] = {
    "whole_node_first": (
        lambda job, offer: job.whole_node,
        lambda job, offer: cores_to_give(job, offer) == offer.cores_free,
        lambda job, offer: cores_to_give(job, offer) > 1,
    ),
}
"""DIRAC's pool CE strategy, a step at a time: whole-node jobs (only an empty node fits
them), jobs taking exactly the free cores, multi-core jobs; then any."""


def policy_choice(
    fitting: Sequence[tuple[Q, Requirements]], offer: Offer, policy: str
) -> list[tuple[Q, Requirements]]:
    """The fitting queues a pilot's ``slot_policy`` wants first (fair share and priority
    then choose among them): the first step of the policy that keeps any; for
    ``smallest_first`` those giving the fewest cores. An unknown or empty policy keeps all."""
    if policy == "smallest_first" and fitting:
        fewest = min(cores_to_give(needs, offer) for _, needs in fitting)
        return [item for item in fitting if cores_to_give(item[1], offer) == fewest]
    for step in POLICY_STEPS.get(policy, ()):
        chosen = [item for item in fitting if step(item[1], offer)]
        if chosen:
            return chosen
    return list(fitting)
