"""The one mapping from a failure to an HTTP answer (coordinator/api/failures.py)."""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg.errors
import pytest

from coordinator.api.failures import error_answer


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.InterfaceError("the connection is closed"),
        sqlite3.OperationalError("database is locked"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_dbapi_error_raised_unwrapped_by_a_precompiled_statement_is_a_503(
    exc: Exception,
) -> None:
    status, body, headers = error_answer(exc, "POST /api/v1/pilots/p/match")
    assert status == 503
    assert body.code.value == "unavailable"
    assert "Retry-After" in headers


def test_a_dbapi_error_that_is_not_an_outage_stays_a_500() -> None:
    status, body, _ = error_answer(psycopg.errors.UniqueViolation("dup"), "POST /x")
    assert status == 500
    assert body.code.value == "internal"
