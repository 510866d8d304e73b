"""The pilot's exception tree; ``pilot.cli`` alone turns these into exit codes."""

from __future__ import annotations

from typing import Any

from protocol import ErrorCode
from wrapper.errors import ChecksumMismatch


class PilotError(Exception):
    """Root of every error the pilot raises on purpose."""


class ConfigError(PilotError):
    """The pilot's configuration is missing something or contradicts itself."""


class CoordinatorUnreachable(PilotError):
    """The coordinator did not answer after every retry.

    ``url`` is what was asked and ``reason`` the last failure in a few words ("connection
    refused", "no answer within 30 s"), for a one-line message."""

    def __init__(self, message: str, *, url: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason or message


class PilotExiting(CoordinatorUnreachable):
    """Not sent, or no longer retried: the pilot's exit deadline has passed."""


class CoordinatorRejected(PilotError):
    """The coordinator answered with an error status and an ``ErrorBody``."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class SandboxChecksumMismatch(CoordinatorRejected, ChecksumMismatch):
    """A downloaded sandbox whose bytes do not hash to the digest it was asked for by.

    Also the wrapper's ``ChecksumMismatch``: the client hashes a download as it writes it,
    and the wrapper, its caller, takes that as the one verification."""

    def __init__(self, expected_sha256: str, actual_sha256: str) -> None:
        message = f"sandbox {expected_sha256} arrived with sha256 {actual_sha256}"
        # Not super().__init__: the two bases take different arguments.
        Exception.__init__(self, f"HTTP 200 {ErrorCode.CHECKSUM_MISMATCH.value}: {message}")
        self.status, self.code, self.message = 200, ErrorCode.CHECKSUM_MISMATCH.value, message
        self.details: dict[str, Any] = {}
        self.expected_sha256 = expected_sha256
        self.actual_sha256 = actual_sha256


class PilotOutdated(CoordinatorRejected):
    """HTTP 426: the coordinator no longer serves this pilot's protocol version."""


class FatalCheckFailed(PilotError):
    """A check marked fatal failed: the node must not take work."""


class BlackHoleStop(PilotError):
    """Too many jobs failed fast in a row: the node is probably broken."""
