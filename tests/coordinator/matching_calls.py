"""Plain HTTP calls the matching tests make as users and pilots (no gridpilot client)."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.conftest import RunningCoordinator

HELLO = {"Executable": "/bin/echo", "Arguments": "hello"}
Pilot = tuple[str, str]
"""A registered pilot: its id and its token."""


def submit_jobs(
    coord: RunningCoordinator,
    vo: str,
    description: dict[str, Any] | None = None,
    *,
    user: str = "alice",
    copies: int = 1,
) -> list[int]:
    """Submit ``copies`` jobs of one description (a parametric bulk when more than one)."""
    job = {**HELLO, **(description or {})}
    if copies > 1:
        job["Parameters"] = copies
    token = coord.token(subject=user, vo=vo)
    body = {"description": json.dumps(job), "format": "json"}
    reply = requests.post(coord.api("/jobs"), json=body, headers=coord.headers(token), timeout=60)
    assert reply.status_code == 201, reply.text
    ids: list[int] = reply.json()["job_ids"]
    return ids


def register_pilot(coord: RunningCoordinator, vo: str, **registration: Any) -> Pilot:
    token = coord.token(role="pilot", subject="factory", vo=vo)
    body = {"hostname": "wn01", "pilot_version": "0.1.0", **registration}
    reply = requests.post(coord.api("/pilots"), json=body, headers=coord.headers(token))
    assert reply.status_code == 201, reply.text
    return str(reply.json()["pilot_id"]), token


def match(coord: RunningCoordinator, pilot: Pilot, **request: Any) -> list[dict[str, Any]]:
    """The jobs (``JobAssignment`` dicts) one match call gives the pilot."""
    pilot_id, token = pilot
    reply = requests.post(
        coord.api(f"/pilots/{pilot_id}/match"), json=request, headers=coord.headers(token)
    )
    assert reply.status_code == 200, reply.text
    jobs: list[dict[str, Any]] = reply.json()["jobs"]
    return jobs


def report(coord: RunningCoordinator, pilot: Pilot, job_id: int, status: str) -> None:
    pilot_id, token = pilot
    reply = requests.post(
        coord.api(f"/jobs/{job_id}/status"),
        json={"status": status},
        headers={**coord.headers(token), "X-Gridpilot-Pilot": pilot_id},
    )
    assert reply.status_code == 200, reply.text


def job_status(coord: RunningCoordinator, vo: str, job_id: int, user: str = "alice") -> str:
    token = coord.token(subject=user, vo=vo)
    reply = requests.get(coord.api(f"/jobs/{job_id}"), headers=coord.headers(token))
    assert reply.status_code == 200, reply.text
    return str(reply.json()["status"])
