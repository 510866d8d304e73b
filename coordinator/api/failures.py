"""How a failure becomes an HTTP error answer: status, ``ErrorBody`` and headers.

The one mapping of the coordinator, used by the app's error handler (``coordinator.app``)
and by the hot routes served below FastAPI (``coordinator.api.hotpath``).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from coordinator.errors import CoordinatorError, Unavailable
from protocol import ErrorBody, ErrorCode

logger = logging.getLogger(__name__)

HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.TOO_LARGE,
}


def error_answer(exc: Exception, where: str) -> tuple[int, ErrorBody, dict[str, str]]:
    """The answer to ``exc`` raised while serving ``where`` (method and path, for the log
    line of an unexpected error)."""
    headers: dict[str, str] = {}
    if isinstance(exc, CoordinatorError):
        status, body = exc.http_status, ErrorBody(exc.code, exc.message, exc.details)
        headers.update(exc.response_headers())
    elif isinstance(exc, RequestValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        status = 400
        body = ErrorBody(ErrorCode.BAD_REQUEST, _validation_message(errors), {"errors": errors})
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        body = ErrorBody(HTTP_CODES.get(status, ErrorCode.HTTP_ERROR), str(exc.detail), {})
        headers.update(exc.headers or {})
    elif _database_gone(exc):
        # The database went away (a restart, a failover): the client retries on 503.
        logger.warning("database unavailable in %s: %s", where, exc)
        unavailable = Unavailable("the database cannot be reached just now; retry later")
        status = unavailable.http_status
        body = ErrorBody(unavailable.code, unavailable.message, {})
        headers.update(unavailable.response_headers())
    else:
        logger.error("unhandled error in %s", where, exc_info=exc)
        status, body = (
            500,
            ErrorBody(ErrorCode.INTERNAL, "internal error; see the coordinator log", {}),
        )
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return status, body, headers


def database_outages(database_url: str) -> tuple[type[Exception], ...]:
    """The exceptions that say the database cannot be reached: SQLAlchemy's wrappers, and
    the DBAPI's own PEP 249 classes, which the precompiled statements of the hot path
    (``coordinator.store.precompiled``) raise unwrapped when a connection is cut mid-way.
    psycopg is imported only for a PostgreSQL URL (it comes with an extra)."""
    classes: list[type[Exception]] = [OperationalError, InterfaceError]
    classes += [sqlite3.OperationalError, sqlite3.InterfaceError]
    if database_url.startswith("postgresql"):
        import psycopg

        classes += [psycopg.OperationalError, psycopg.InterfaceError]
    return tuple(classes)


def _database_gone(exc: Exception) -> bool:
    return any(
        cls.__name__ in _DBAPI_GONE and cls.__module__.split(".")[0] in _DBAPIS
        for cls in type(exc).__mro__
    ) or isinstance(exc, (OperationalError, InterfaceError))


_DBAPI_GONE = ("OperationalError", "InterfaceError")
_DBAPIS = ("sqlite3", "psycopg")


def _validation_message(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "malformed request"
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"malformed request: {where}: {first['msg']}"
