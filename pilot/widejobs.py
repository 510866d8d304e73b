"""Wide jobs must not starve on a node kept busy by narrow ones.

A pilot that always has a core or two free keeps taking 1-core jobs; a job needing the
whole node, or 8 of its 16 cores, would never find that many free at once. The
coordinator tells each match reply's pilot when such a job waits (``wider_job_cores``:
the fewest cores of the waiting jobs that fit this node but not its free cores now). Once
it has heard so for ``patience_s`` in a row, the pilot takes no narrower jobs: as its
running jobs end, the cores add up, and it asks for jobs of at least that width
(``MatchRequest.min_cores``). If that request finds nothing (another pilot took the job)
or takes the wide job, it goes back to filling its cores as before.

So a wide job starts within ``patience_s`` plus the longest run time of the narrow jobs on
the node, at the cost of those cores idling while they drain (as HTCondor's defrag daemon
drains a machine for whole-machine jobs). Pure state over an injected clock value.
"""

from __future__ import annotations

import logging
from typing import Optional

logger = logging.getLogger(__name__)


class WideJobHold:
    def __init__(self, patience_s: float) -> None:
        self.patience_s = patience_s
        """0: never hold."""
        self.cores = 0
        """Cores of the wide job held for (0: none heard of)."""
        self._since: Optional[float] = None

    def heard(self, wider_cores: int, now: float) -> None:
        """A match reply said a job of ``wider_cores`` cores waits (0: none does)."""
        if wider_cores <= 0 or self.patience_s <= 0:
            self._since, self.cores = None, 0
            return
        if self._since is None:
            self._since = now
        self.cores = wider_cores

    def due(self, now: float) -> bool:
        """The wide job has waited long enough: make room for it."""
        return self._since is not None and now - self._since >= self.patience_s

    def holding(self, free_cores: int, now: float) -> bool:
        """Ask for no job now: cores are being freed for a wide job."""
        return self.due(now) and free_cores < self.cores

    def min_cores(self, now: float) -> int:
        """``MatchRequest.min_cores``: the wide job's width once due, else 0."""
        return self.cores if self.due(now) else 0

    def answered(self, asked_min_cores: int, got_jobs: bool, now: float) -> None:
        """A request asking for ``asked_min_cores`` came back: served or missed, the hold
        is over (the next wide job waits its own patience)."""
        if asked_min_cores:
            logger.info(
                "%d free cores held for a %d-core job: %s",
                asked_min_cores,
                self.cores,
                "it started" if got_jobs else "none left, filling the node again",
            )
            self._since, self.cores = None, 0
