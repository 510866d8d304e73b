"""The coordinator's exception tree.

Every error the coordinator raises on purpose derives from ``CoordinatorError`` and carries
the HTTP status, a stable machine-readable ``code`` and ``details``. The single error handler
in ``coordinator.app`` turns them into ``{code, message, details}`` responses; nothing else
catches them for that purpose.
"""

from __future__ import annotations

from typing import Any


class CoordinatorError(Exception):
    http_status = 500
    code = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


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


class TooLarge(CoordinatorError):
    http_status = 413
    code = "too_large"


class ChecksumMismatch(CoordinatorError):
    http_status = 422
    code = "checksum_mismatch"


class PilotTooOld(CoordinatorError):
    http_status = 426
    code = "pilot_too_old"
