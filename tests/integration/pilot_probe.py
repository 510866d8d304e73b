"""What the pilot tests read back: job histories, pilot records, the pilot's id and log."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import requests

from tests.conftest import RunningCoordinator

REGISTERED = re.compile(r"registered as pilot (\w+)")


def pilot_id_from(log_text: str) -> str:
    found = REGISTERED.search(log_text)
    assert found, f"the pilot never registered:\n{log_text}"
    return found.group(1)


def history(coordinator: RunningCoordinator, job_id: int) -> list[dict[str, Any]]:
    token = coordinator.token(role="admin", subject="root")
    reply = requests.get(
        coordinator.api(f"/jobs/{job_id}/history"), headers=coordinator.headers(token), timeout=10
    )
    reply.raise_for_status()
    entries: list[dict[str, Any]] = reply.json()["history"]
    return entries


def first_time(entries: list[dict[str, Any]], status: str) -> float:
    """UNIX time of the first history entry with ``status``."""
    for entry in entries:
        if entry["status"] == status:
            return datetime.fromisoformat(entry["at"]).timestamp()
    raise AssertionError(f"no {status} in {[e['status'] for e in entries]}")


def pilot_record(coordinator: RunningCoordinator, pilot_id: str) -> dict[str, Any]:
    """The coordinator's registry entry for a pilot, as an admin sees it."""
    token = coordinator.token(role="admin", subject="root")
    reply = requests.get(
        coordinator.api(f"/pilots/{pilot_id}"), headers=coordinator.headers(token), timeout=10
    )
    assert reply.status_code == 200, reply.text
    record: dict[str, Any] = reply.json()
    return record


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)
