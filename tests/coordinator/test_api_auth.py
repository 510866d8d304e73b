"""Tokens at the HTTP boundary: every bad token is a 401 JSON error, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.logic.auth import issue_token
from protocol import Role
from tests.conftest import RunningCoordinator

ENDPOINTS = [
    ("GET", "/jobs"),
    ("GET", "/jobs/1"),
    ("POST", "/jobs"),
    ("POST", "/pilots"),
    ("POST", "/pilots/x/match"),
    ("POST", "/sandboxes"),
    ("GET", "/sandboxes/" + "ab" * 32),
]


def _call(coord: RunningCoordinator, method: str, path: str, auth: str | None) -> requests.Response:
    headers = {} if auth is None else {"Authorization": auth}
    return requests.request(method, coord.api(path), headers=headers, json={})


def _bad_tokens(coord: RunningCoordinator) -> dict[str, str | None]:
    past = datetime.now(timezone.utc) - timedelta(hours=2)
    expired = issue_token(
        coord.signing_key, subject="alice", vo="vo1", role=Role.USER, ttl_s=60, now=past
    )
    forged = issue_token(
        Ed25519PrivateKey.generate(), subject="alice", vo="vo1", role=Role.ADMIN, ttl_s=600
    )
    good = coord.token()
    return {
        "missing": None,
        "not bearer": f"Basic {good}",
        "empty bearer": "Bearer ",
        "garbage": "Bearer not-a-token",
        "expired": f"Bearer {expired}",
        "forged": f"Bearer {forged}",
        "truncated": f"Bearer {good[:-3]}",
    }


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_bad_tokens_are_refused_with_401(
    shared_coordinator: RunningCoordinator, method: str, path: str
) -> None:
    for label, auth in _bad_tokens(shared_coordinator).items():
        reply = _call(shared_coordinator, method, path, auth)
        assert reply.status_code == 401, (label, reply.text)
        body = reply.json()
        assert body["code"] == "unauthenticated"
        assert body["message"]
        assert reply.headers["WWW-Authenticate"] == "Bearer"


def test_expired_token_says_it_expired(shared_coordinator: RunningCoordinator) -> None:
    auth = _bad_tokens(shared_coordinator)["expired"]
    reply = _call(shared_coordinator, "GET", "/jobs", auth)
    assert "expired" in reply.json()["message"]


def test_token_of_another_coordinator_is_refused(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    first = start_coordinator()
    second = start_coordinator()
    token = first.token()
    assert _call(first, "GET", "/jobs", f"Bearer {token}").status_code == 200
    assert _call(second, "GET", "/jobs", f"Bearer {token}").status_code == 401
