"""Does a job fit a pilot's offer? Pure functions over plain values, no SQL.

``Requirements`` is what a job needs, ``Offer`` what a pilot has free right now.
Task queues and fair share will group requirements and order owners; they build on this.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

ANY_SITE = "ANY"


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


def normalise_sites(site: str, sites: Iterable[str]) -> frozenset[str]:
    """The set of allowed sites from ``Site`` (a name or ANY) plus a ``sites`` list."""
    named = {s for s in sites if s and s.upper() != ANY_SITE}
    if site and site.upper() != ANY_SITE:
        named.add(site)
    return frozenset(named)


def refusal(job: Requirements, offer: Offer) -> str:
    """Why ``offer`` cannot take ``job``, or ``""`` when it can."""
    if job.vo != offer.vo:
        return "vo"
    if job.sites and offer.site not in job.sites:
        return "site"
    if offer.site in job.banned_sites:
        return "banned_site"
    if job.platform and job.platform.lower() != offer.platform.lower():
        return "platform"
    if not job.tags <= offer.tags:
        return "tags"
    if job.cores > offer.cores_free:
        return "cores"
    if job.max_ram_mb and offer.memory_free_mb and job.max_ram_mb > offer.memory_free_mb:
        return "memory"
    if offer.time_left_s is not None:
        for needed in (job.cpu_time_s, job.wall_time_s):
            if needed is not None and needed > offer.time_left_s:
                return "time_left"
    if job.container and not offer.container_runtimes:
        return "container"
    return ""


def fits(job: Requirements, offer: Offer) -> bool:
    return not refusal(job, offer)


def cores_to_give(job: Requirements, offer: Offer) -> int:
    """A job with a core range gets as many free cores as it can use."""
    return max(job.cores, min(job.max_cores, offer.cores_free))


def after_taking(offer: Offer, job: Requirements) -> Offer:
    """What is left of ``offer`` once ``job`` runs on it (for multi-job matches)."""
    memory_left = offer.memory_free_mb
    if memory_left and job.max_ram_mb:
        memory_left = max(1, memory_left - job.max_ram_mb)
    return dataclasses.replace(
        offer,
        cores_free=offer.cores_free - cores_to_give(job, offer),
        memory_free_mb=memory_left,
    )
