"""Why and how the pilot stops taking work: the cause, the reason, the drain deadline.

Every stop is a drain (no new jobs; running ones finish); the first cause wins and decides
the exit code. Only a signal puts a deadline on the drain (``drain_grace_s``).
"""

from __future__ import annotations

import enum
from typing import Optional


class StopCause(enum.Enum):
    SIGNAL = "signal"
    FATAL_CHECK = "fatal_check"
    BLACK_HOLE = "black_hole"
    NO_TIME_LEFT = "no_time_left"


class StopState:
    def __init__(self) -> None:
        self.cause: Optional[StopCause] = None
        self.reason = ""
        self.signals = 0
        self.drain_deadline: Optional[float] = None
        self.hard = False
        """Payloads are being killed (second signal, drain grace over): hurry to exit."""

    @property
    def stopping(self) -> bool:
        return self.cause is not None

    def begin(self, cause: StopCause, reason: str) -> bool:
        """Record the stop; False when the pilot was already stopping (nothing new)."""
        if self.cause is not None:
            return False
        self.cause, self.reason = cause, reason
        return True

    def hurried(self) -> bool:
        return self.hard

    def drain_expired(self, now: float) -> bool:
        """True once, when the drain deadline has passed."""
        if self.drain_deadline is None or now < self.drain_deadline:
            return False
        self.drain_deadline = None
        self.hard = True
        return True
