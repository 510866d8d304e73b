"""The black-hole guard: a node that fails every job quickly must stop taking jobs.

A broken node (bad mount, missing library, full disk) fails each payload within seconds and
would otherwise drain the whole queue into Failed. But one user's broken payloads also fail
fast, on every node: stopping pilots for them would leave every other user's jobs waiting.
So the guard counts only failures that point at the node: after ``max_fast_failures`` jobs
in a row failed within ``fast_s`` of starting, it trips when they are infrastructure
failures (the wrapper or runtime failed, not the payload; ``pilot.tally`` counts a failure
about an image the job named itself as its owner's), or when they are the jobs of at
least ``min_owners`` owners (infrastructure failures counting as one more). A job that
succeeds, or fails slowly, ends the run.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class BlackHoleGuard:
    max_fast_failures: int = 5
    fast_s: float = 60.0
    min_owners: int = 2
    streak: list[tuple[str, bool]] = dataclasses.field(default_factory=list)
    """The current run of fast failures: (owner, infrastructure failure) each."""

    def record(
        self, failed: bool, duration_s: float, *, owner: str = "", infrastructure: bool = False
    ) -> bool:
        """Count one finished job; True when the node should stop taking jobs."""
        if failed and duration_s < self.fast_s:
            self.streak.append((owner, infrastructure))
        else:
            self.streak.clear()
        return self.tripped

    @property
    def fast_failures_in_a_row(self) -> int:
        return len(self.streak)

    @property
    def infrastructure_failures(self) -> int:
        return sum(1 for _owner, infrastructure in self.streak if infrastructure)

    @property
    def owners(self) -> int:
        """Owners whose payloads failed in the run (infrastructure failures count as one)."""
        payload_owners = {owner for owner, infrastructure in self.streak if not infrastructure}
        return len(payload_owners) + (1 if self.infrastructure_failures else 0)

    @property
    def tripped(self) -> bool:
        if self.max_fast_failures <= 0 or len(self.streak) < self.max_fast_failures:
            return False
        only_infrastructure = self.infrastructure_failures == len(self.streak)
        return only_infrastructure or self.owners >= self.min_owners
