"""Every list is paged: a default and a maximum page size, and a cursor to the next page
that neither repeats nor skips an item, whatever is added meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from coordinator.logic.paging import MAX_LIMIT
from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User


def all_pages(fetch: Callable[..., requests.Response], key: str, limit: int) -> list[list[Any]]:
    """Every page of a list, following next_cursor to the end."""
    pages: list[list[Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        reply = fetch(**params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        pages.append(body[key])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor never ends"


def test_jobs_come_in_pages_newest_first(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    user = User(coord, vo)
    ids = user.submit(Parameters=25)
    first = user.get("/jobs", limit=10).json()
    assert [job["job_id"] for job in first["jobs"]] == sorted(ids, reverse=True)[:10]
    assert first["counts"] == {"Waiting": 25}  # counts are over every page
    # A job submitted between two pages does not shift the next page.
    later = user.submit()
    second = user.get("/jobs", limit=10, cursor=first["next_cursor"]).json()
    assert [job["job_id"] for job in second["jobs"]] == sorted(ids, reverse=True)[10:20]
    assert second["counts"] == {"Waiting": 26}
    pages = all_pages(lambda **p: user.get("/jobs", **p), "jobs", 10)
    assert [len(page) for page in pages] == [10, 10, 6]
    listed = [job["job_id"] for page in pages for job in page]
    assert listed == sorted(ids + later, reverse=True)
    # A full last page needs one more request to learn it was the last.
    exact = all_pages(lambda **p: user.get("/jobs", **p), "jobs", 13)
    assert [len(page) for page in exact] == [13, 13]


def test_a_job_history_comes_in_pages(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    user, pilot = User(coord, vo), FakePilot(coord, vo)
    [job_id] = user.submit()
    assert pilot.match() == [job_id]
    for minor in ("one", "two", "three"):
        assert pilot.report(job_id, "Running", minor_status=minor).status_code == 200
    whole = user.history(job_id)
    assert len(whole) == 7
    pages = all_pages(lambda **p: user.get(f"/jobs/{job_id}/history", **p), "history", 3)
    assert [len(page) for page in pages] == [3, 3, 1]
    flat = [(e["status"], e["minor_status"], e["source"]) for page in pages for e in page]
    assert flat == whole


def test_pilots_come_in_pages(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    pilots = [FakePilot(coord, vo) for _ in range(5)]
    user = User(coord, vo)
    pages = all_pages(lambda **p: user.get("/pilots", **p), "pilots", 2)
    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [pilot["pilot_id"] for page in pages for pilot in page]
    assert listed == [pilot.pilot_id for pilot in reversed(pilots)]


def test_revoked_tokens_come_in_pages(coordinator: RunningCoordinator) -> None:
    coord = coordinator
    admin = coord.headers(coord.token("admin", "ops", "vo1"))
    for number in range(5):
        body = {"token_id": f"token-{number}", "reason": "test"}
        reply = requests.post(coord.api("/tokens/revoke"), json=body, headers=admin)
        assert reply.status_code == 200, reply.text

    def fetch(**params: Any) -> requests.Response:
        return requests.get(coord.api("/tokens/revoked"), params=params, headers=admin)

    pages = all_pages(fetch, "revoked", 2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [item["token_id"] for page in pages for item in page] == [
        f"token-{number}" for number in range(5)
    ]


@pytest.mark.parametrize("path", ["/jobs", "/pilots", "/tokens/revoked", "/jobs/{job}/history"])
def test_page_sizes_and_cursors_are_checked(
    shared_coordinator: RunningCoordinator, vo: str, path: str
) -> None:
    coord = shared_coordinator
    admin = User(coord, vo, subject="ops", role="admin")
    [job_id] = admin.submit()
    where = path.format(job=job_id)
    assert admin.get(where).status_code == 200  # the default limit applies
    assert admin.get(where, limit=MAX_LIMIT).status_code == 200
    for limit in (0, MAX_LIMIT + 1, -1):
        reply = admin.get(where, limit=limit)
        assert (reply.status_code, reply.json()["code"]) == (400, "bad_request"), limit
    for cursor in ("garbage", "W10", "WyJ4Il0", "Wy0xMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDBd", "x" * 2000):
        reply = admin.get(where, cursor=cursor)
        assert (reply.status_code, reply.json()["code"]) == (400, "bad_request"), cursor
