"""The pilot's exception tree; ``pilot.cli`` alone turns these into exit codes."""

from __future__ import annotations

from typing import Any


class PilotError(Exception):
    """Root of every error the pilot raises on purpose."""


class ConfigError(PilotError):
    """The pilot's configuration is missing something or contradicts itself."""


class CoordinatorUnreachable(PilotError):
    """The coordinator did not answer after every retry."""


class CoordinatorRejected(PilotError):
    """The coordinator answered with an error status and an ``ErrorBody``."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class PilotOutdated(CoordinatorRejected):
    """HTTP 426: the coordinator no longer serves this pilot's protocol version."""


class FatalCheckFailed(PilotError):
    """A check marked fatal failed: the node must not take work."""


class BlackHoleStop(PilotError):
    """Too many jobs failed fast in a row: the node is probably broken."""
