"""When each node check is due again between jobs.

A check with an interval (``CheckSpec.interval_s``, or the pilot's ``recheck_interval_s``
for every check) is run again once that long has passed since it last ran; a check without
one runs only at start. Pure bookkeeping over an injected ``now``; the agent runs the checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from checks.api import CheckSpec


class RecheckSchedule:
    def __init__(self, specs: Sequence[CheckSpec], override_s: Optional[float], now: float) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._interval_s: dict[str, float] = {}
        for spec in specs:
            interval = override_s if override_s is not None else spec.interval_s
            if interval is not None and interval > 0:
                self._interval_s[spec.name] = interval
        self._due_at = {name: now + interval for name, interval in self._interval_s.items()}

    def due(self, now: float) -> list[CheckSpec]:
        return [self._specs[name] for name, at in self._due_at.items() if at <= now]

    def ran(self, specs: Sequence[CheckSpec], now: float) -> None:
        for spec in specs:
            if spec.name in self._interval_s:
                self._due_at[spec.name] = now + self._interval_s[spec.name]

    def next_due_at(self) -> Optional[float]:
        return min(self._due_at.values(), default=None)
