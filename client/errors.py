"""The client's exception tree: what can go wrong for a user command, said in words.

``client.cli`` alone turns these into a message and an exit code (docs/cli.md, "Exit codes").
"""

from __future__ import annotations

from typing import Any, Optional


class ClientError(Exception):
    """Root of every error the client raises on purpose."""

    def __init__(self, message: str, *, details: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class UsageError(ClientError):
    """A command line or setting that cannot be used: a bad URL, a missing option."""


class InputError(ClientError):
    """A local file or directory the command cannot use: missing, unreadable, not UTF-8,
    not a valid job description, not writable."""


class Unreachable(ClientError):
    """The coordinator did not answer (connection refused, unknown host, timeout, TLS), or
    what answered is not a gridpilot coordinator."""


class NotAuthorised(ClientError):
    """No token, or the coordinator refused it (expired, revoked, not issued by it) or
    refused its role the request."""


class Refused(ClientError):
    """The coordinator said no: no such job, a job that cannot change that way, too large."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int = 0,
        details: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(message, details=details)
        self.code = code
        self.status = status
