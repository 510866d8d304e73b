"""The coordinator's exception tree.

Every error the coordinator raises on purpose derives from ``CoordinatorError`` and carries
the HTTP status, a stable machine-readable ``code`` and ``details``. The single error handler
in ``coordinator.app`` turns them into ``{code, message, details}`` responses; nothing else
catches them for that purpose.
"""

from __future__ import annotations

import math
from typing import Any


class CoordinatorError(Exception):
    http_status = 500
    code = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def response_headers(self) -> dict[str, str]:
        """Extra HTTP headers the error response carries (``Retry-After`` for 429)."""
        return {}


class BadRequest(CoordinatorError):
    http_status = 400
    code = "bad_request"


class InvalidDescription(BadRequest):
    """A job description that parses but cannot be a job (bad types, missing Executable)."""

    code = "invalid_description"


class JDLSyntaxError(BadRequest):
    """A JDL text that does not parse; names the line and column (1-based)."""

    code = "jdl_syntax"

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
    code = "unauthenticated"


class Forbidden(CoordinatorError):
    http_status = 403
    code = "forbidden"


class NotFound(CoordinatorError):
    http_status = 404
    code = "not_found"


class InvalidTransition(CoordinatorError):
    http_status = 409
    code = "invalid_transition"


class LeaseLost(CoordinatorError):
    http_status = 409
    code = "lease_lost"


class RescheduleLimit(CoordinatorError):
    """A user asked to reschedule a job that has been rescheduled the maximum times."""

    http_status = 409
    code = "reschedule_limit"


class LogGap(CoordinatorError):
    """A log chunk starting past the stored end: bytes in between were lost."""

    http_status = 409
    code = "log_gap"


class LogConflict(CoordinatorError):
    """A log chunk whose bytes differ from the ones already stored at the same offsets,
    or a log that can take no more bytes (the job is over)."""

    http_status = 409
    code = "log_conflict"


class TooLarge(CoordinatorError):
    http_status = 413
    code = "too_large"


class ChecksumMismatch(CoordinatorError):
    http_status = 422
    code = "checksum_mismatch"


class PilotTooOld(CoordinatorError):
    http_status = 426
    code = "pilot_too_old"


class OutputUnavailable(NotFound):
    """A job has no output sandbox (yet)."""

    code = "no_output"


class UnsafeSandbox(CoordinatorError):
    """A downloaded sandbox that would write outside its target dir (or is otherwise unsafe)."""

    http_status = 422
    code = "unsafe_sandbox"


class RateLimited(CoordinatorError):
    """Too many requests with one token; ``retry_after_s`` says when to come back."""

    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, details={"retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s

    def response_headers(self) -> dict[str, str]:
        # Retry-After takes whole seconds; round up so a client never comes back too early.
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}
