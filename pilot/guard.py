"""The black-hole guard: a node that fails every job quickly must stop taking jobs.

A broken node (bad mount, missing library, full disk) fails each payload within seconds and
would otherwise drain the whole queue into Failed. After ``max_fast_failures`` jobs in a row
have failed within ``fast_s`` of starting, the guard trips.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class BlackHoleGuard:
    max_fast_failures: int = 5
    fast_s: float = 60.0
    fast_failures_in_a_row: int = 0

    def record(self, failed: bool, duration_s: float) -> bool:
        """Count one finished job; True when the node should stop taking jobs."""
        if failed and duration_s < self.fast_s:
            self.fast_failures_in_a_row += 1
        else:
            self.fast_failures_in_a_row = 0
        return self.tripped

    @property
    def tripped(self) -> bool:
        return self.max_fast_failures > 0 and self.fast_failures_in_a_row >= self.max_fast_failures
