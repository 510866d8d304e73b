"""The coordinator's site list: when one is configured, jobs may name only known sites."""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.errors import InvalidDescription
from coordinator.logic.description import JobFields


def check_sites(fields: Iterable[JobFields], known_sites: frozenset[str]) -> None:
    """Refuse a Site or BannedSites naming a site the coordinator does not know.

    A typo in ``Site`` would otherwise leave the job Waiting forever, as no pilot of that
    name ever comes.
    """
    if not known_sites:
        return
    for job in fields:
        for attribute, names in (("Site", job.sites), ("BannedSites", job.banned_sites)):
            unknown = sorted(set(names) - known_sites - {"ANY"})
            if unknown:
                raise InvalidDescription(
                    f"{attribute} names unknown site(s): {', '.join(unknown)}",
                    details={
                        "attribute": attribute,
                        "unknown": unknown,
                        "known": sorted(known_sites),
                    },
                )
