"""Token administration against a real coordinator: revocation (API and CLI), issuing by
admins, and ``gridpilot token create`` telling the token's id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import requests

from coordinator.logic.auth import verify_token
from tests.conftest import RunningCoordinator


def _revoke(c: RunningCoordinator, admin: str, token_id: str, reason: str = "") -> Any:
    return requests.post(
        c.api("/tokens/revoke"),
        json={"token_id": token_id, "reason": reason},
        headers=c.headers(admin),
        timeout=10,
    )


def _token_id(c: RunningCoordinator, token: str) -> str:
    return verify_token(c.signing_key.public_key(), token).token_id


def _gridpilot(c: RunningCoordinator, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRIDPILOT_URL": c.url, "GRIDPILOT_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_revoked_token_is_refused_on_its_next_request(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    c = shared_coordinator
    user = c.token(subject="mallory", vo=vo)
    other = c.token(subject="mallory", vo=vo)  # same person, another token: stays valid
    admin = c.token("admin", subject="ops", vo=vo)
    assert requests.get(c.api("/jobs"), headers=c.headers(user), timeout=10).status_code == 200

    reply = _revoke(c, admin, _token_id(c, user), reason="laptop stolen")
    assert reply.status_code == 200, reply.text
    assert reply.json()["revoked_by"] == "ops"
    assert reply.json()["reason"] == "laptop stolen"

    refused = requests.get(c.api("/jobs"), headers=c.headers(user), timeout=10)
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthenticated"
    assert "revoked" in refused.json()["message"]
    assert requests.get(c.api("/jobs"), headers=c.headers(other), timeout=10).status_code == 200


def test_revoking_twice_keeps_the_first_record_and_the_list_shows_it(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    c = shared_coordinator
    admin = c.token("admin", subject="ops", vo=vo)
    token_id = "revoked-twice"
    first = _revoke(c, admin, token_id, "first").json()
    second = _revoke(c, c.token("admin", subject="other-op", vo=vo), token_id, "again").json()
    assert second == first
    listed = requests.get(c.api("/tokens/revoked"), headers=c.headers(admin), timeout=10)
    assert [item for item in listed.json()["revoked"] if item["token_id"] == token_id] == [first]


def test_only_admins_revoke_or_list(shared_coordinator: RunningCoordinator, vo: str) -> None:
    c = shared_coordinator
    for role in ("user", "pilot"):
        token = c.token(role, vo=vo)
        assert _revoke(c, token, "whatever").status_code == 403
        listed = requests.get(c.api("/tokens/revoked"), headers=c.headers(token), timeout=10)
        assert listed.status_code == 403


def test_bad_revocation_requests_are_400(shared_coordinator: RunningCoordinator, vo: str) -> None:
    c = shared_coordinator
    admin = c.token("admin", vo=vo)
    for body in ({}, {"token_id": ""}, {"token_id": "x" * 65}, {"token_id": 5}):
        reply = requests.post(
            c.api("/tokens/revoke"), json=body, headers=c.headers(admin), timeout=10
        )
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["code"] == "bad_request"


def test_revocation_survives_a_restart(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    first = start_coordinator()
    user = first.token()
    assert _revoke(first, first.token("admin"), _token_id(first, user)).status_code == 200
    first.process.terminate()
    first.process.wait(timeout=10)
    from tests.conftest import launch_coordinator

    again = launch_coordinator(first.data_dir)
    try:
        reply = requests.get(again.api("/jobs"), headers=again.headers(user), timeout=10)
        assert reply.status_code == 401
    finally:
        again.process.terminate()
        again.process.wait(timeout=10)


def test_admin_issues_a_token_that_works(shared_coordinator: RunningCoordinator, vo: str) -> None:
    c = shared_coordinator
    admin = c.token("admin", subject="ops", vo=vo)
    body = {"subject": "factory-7", "vo": vo, "role": "pilot", "ttl_s": 600}
    reply = requests.post(c.api("/tokens"), json=body, headers=c.headers(admin), timeout=10)
    assert reply.status_code == 201, reply.text
    issued = reply.json()
    assert (issued["subject"], issued["vo"], issued["role"]) == ("factory-7", vo, "pilot")
    assert issued["token_id"] == _token_id(c, issued["token"])
    registration = {"hostname": "wn1", "pilot_version": "test"}
    registered = requests.post(
        c.api("/pilots"), json=registration, headers=c.headers(issued["token"]), timeout=10
    )
    assert registered.status_code == 201, registered.text


def test_issuing_is_for_admins_and_bounded(shared_coordinator: RunningCoordinator, vo: str) -> None:
    c = shared_coordinator
    body = {"subject": "eve", "vo": vo, "role": "admin"}
    user = c.token(vo=vo)
    assert (
        requests.post(c.api("/tokens"), json=body, headers=c.headers(user), timeout=10).status_code
        == 403
    )
    admin = c.token("admin", vo=vo)
    too_long = {**body, "ttl_s": 10**9}
    reply = requests.post(c.api("/tokens"), json=too_long, headers=c.headers(admin), timeout=10)
    assert reply.status_code == 400
    assert reply.json()["details"]["max_ttl_s"] == 7 * 24 * 3600


def test_cli_create_prints_the_id_and_revoke_uses_it(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    c = shared_coordinator
    made = subprocess.run(
        [sys.executable, "-m", "client", "token", "create", "--data-dir", str(c.data_dir),
         "--subject", "bob", "--vo", vo],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    token_id = _token_id(c, token)
    assert f"token id {token_id}" in made.stderr

    as_json = subprocess.run(
        [sys.executable, "-m", "client", "token", "create", "--data-dir", str(c.data_dir),
         "--subject", "bob", "--vo", vo, "--ttl-days", "1", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    described = json.loads(as_json.stdout)
    assert described["token_id"] == _token_id(c, described["token"])
    assert described["expires_at"].startswith("20")

    refused = _gridpilot(c, token, "token", "revoke", token_id)
    assert refused.returncode == 4  # not authorised, said in words
    assert "not allowed: this endpoint is for admins" in refused.stderr
    assert "HTTP" not in refused.stderr
    admin = c.token("admin", subject="ops", vo=vo)
    revoked = _gridpilot(c, admin, "token", "revoke", token_id, "--reason", "left the VO")
    assert revoked.returncode == 0, revoked.stderr
    assert f"Token {token_id}: revoked" in revoked.stdout
    after = _gridpilot(c, token, "status", "1")
    assert after.returncode == 4
    assert f"the coordinator refused the token: token {token_id} has been revoked" in after.stderr
    listed = _gridpilot(c, admin, "token", "revoked")
    assert token_id in listed.stdout and "left the VO" in listed.stdout
