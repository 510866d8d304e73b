"""The coordinator's exception tree.

Every error the coordinator raises on purpose derives from ``CoordinatorError`` and carries
the HTTP status, a stable machine-readable ``code`` (an ``ErrorCode`` of the wire contract)
and ``details``. The single error handler
in ``coordinator.app`` turns them into ``{code, message, details}`` responses; nothing else
catches them for that purpose.
"""

from __future__ import annotations

import math
from typing import Any

from protocol import ErrorCode


class CoordinatorError(Exception):
    http_status = 500
    code: str = ErrorCode.INTERNAL

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def response_headers(self) -> dict[str, str]:
        """Extra HTTP headers the error response carries (``Retry-After`` for 429)."""
        return {}


class BadRequest(CoordinatorError):
    http_status = 400
    code = ErrorCode.BAD_REQUEST


class InvalidDescription(BadRequest):
    """A job description that parses but cannot be a job (bad types, missing Executable)."""

    code = ErrorCode.INVALID_DESCRIPTION


class JDLSyntaxError(BadRequest):
    """A JDL text that does not parse; names the line and column (1-based)."""

    code = ErrorCode.JDL_SYNTAX

    def __init__(self, message: str, *, line: int, column: int) -> None:
        super().__init__(
            f"line {line}, column {column}: {message}",
            details={"line": line, "column": column, "reason": message},
        )
        self.line = line
        self.column = column
        self.reason = message


class Unauthenticated(CoordinatorError):
    http_status = 401
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(CoordinatorError):
    http_status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(CoordinatorError):
    http_status = 404
    code = ErrorCode.NOT_FOUND


class InvalidTransition(CoordinatorError):
    http_status = 409
    code = ErrorCode.INVALID_TRANSITION


class LeaseLost(CoordinatorError):
    http_status = 409
    code = ErrorCode.LEASE_LOST


class RescheduleLimit(CoordinatorError):
    """A user asked to reschedule a job that has been rescheduled the maximum times."""

    http_status = 409
    code = ErrorCode.RESCHEDULE_LIMIT


class LogGap(CoordinatorError):
    """A log chunk starting past the stored end: bytes in between were lost."""

    http_status = 409
    code = ErrorCode.LOG_GAP


class LogConflict(CoordinatorError):
    """A log chunk whose bytes differ from the ones already stored at the same offsets,
    or a log that can take no more bytes (the job is over)."""

    http_status = 409
    code = ErrorCode.LOG_CONFLICT


class TooLarge(CoordinatorError):
    http_status = 413
    code = ErrorCode.TOO_LARGE


class ChecksumMismatch(CoordinatorError):
    http_status = 422
    code = ErrorCode.CHECKSUM_MISMATCH


class PilotTooOld(CoordinatorError):
    http_status = 426
    code = ErrorCode.PILOT_TOO_OLD


class OutputUnavailable(NotFound):
    """A job has no output sandbox (yet)."""

    code = ErrorCode.NO_OUTPUT


class UnsafeSandbox(CoordinatorError):
    """A downloaded sandbox that would write outside its target dir (or is otherwise unsafe)."""

    http_status = 422
    code = ErrorCode.UNSAFE_SANDBOX


class RateLimited(CoordinatorError):
    """Too many requests with one token; ``retry_after_s`` says when to come back."""

    http_status = 429
    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, details={"retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s

    def response_headers(self) -> dict[str, str]:
        # Retry-After takes whole seconds; round up so a client never comes back too early.
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class WriterBusy(CoordinatorError):
    """A write that was asked not to wait found another writer under way
    (``Database.without_waiting``). Never an answer: the caller does the work in a
    thread instead."""

    http_status = 503


class Unavailable(CoordinatorError):
    """What the coordinator stands on (the database, the sandbox store) cannot be reached
    just now: 503, which clients retry."""

    http_status = 503
    code = ErrorCode.UNAVAILABLE

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}
