"""The live event stream (``GET /api/v1/events``) against a real coordinator: status changes
and log appends arrive, only for what the caller may see, and a client resumes by
Last-Event-ID, also after the coordinator restarted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from coordinator.logic.events import EventCursor
from tests.conftest import RunningCoordinator, _stop, _stop_and_check, launch_coordinator
from tests.coordinator.pilot_calls import FakePilot, User
from tests.coordinator.sse_calls import EventReader


def stream(user: User, **params: Any) -> EventReader:
    reader = EventReader(user.coord.api("/events"), user.headers(), **params)
    assert reader.status_code == 200, reader.reply.text
    assert reader.reply.headers["content-type"].startswith("text/event-stream")
    return reader


def status_of(job_id: int, status: str) -> Any:
    return lambda e: e["event"] == "status" and e["data"] == {**e["data"], "job_id": job_id,
                                                              "status": status}  # fmt: skip


def test_status_changes_and_log_lines_arrive_live(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    alice = User(shared_coordinator, vo)
    pilot = FakePilot(shared_coordinator, vo)
    with stream(alice) as events:
        time.sleep(0.5)  # the stream starts from "now": let it take its position
        (job_id,) = alice.submit()
        waiting = events.wait_for(status_of(job_id, "Waiting"), timeout_s=2)
        assert waiting["data"]["minor_status"] == "Pilot Agent Submission"
        assert pilot.match() == [job_id]
        pilot.report(job_id, "Running")
        events.wait_for(status_of(job_id, "Running"), timeout_s=2)
        sent = time.monotonic()
        assert pilot.append_log(job_id, b"line one\n", offset=0).status_code == 200
        line = events.wait_for(lambda e: e["event"] == "log", timeout_s=2)
        assert time.monotonic() - sent < 1.0, "a log line must show within a second"
        assert line["data"] == {**line["data"], "job_id": job_id, "stream": "stdout",
                                "offset": 0, "text": "line one\n", "truncated": False}  # fmt: skip
        assert alice.post(f"/jobs/{job_id}/kill").status_code == 200
        marked = events.wait_for(
            lambda e: e["data"].get("minor_status") == "Marked for termination", timeout_s=2
        )
        assert (marked["data"]["job_id"], marked["data"]["status"]) == (job_id, "Running")
        assert [e["id"] for e in events.seen] == sorted(e["id"] for e in events.seen)


def test_nobody_sees_another_owners_events(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    alice, bob = User(coord, vo), User(coord, vo, subject="bob")
    alice_elsewhere = User(coord, f"{vo}-other")
    admin = User(coord, f"{vo}-admins", subject="ops", role="admin")
    users = {"bob": bob, "other_vo": alice_elsewhere, "admin": admin, "alice": alice}
    readers = {name: stream(user) for name, user in users.items()}
    try:
        time.sleep(0.5)
        (secret,) = alice.submit()
        (marker,) = bob.submit()
        (elsewhere,) = alice_elsewhere.submit()
        readers["alice"].wait_for(status_of(secret, "Waiting"))
        readers["admin"].wait_for(status_of(secret, "Waiting"))
        readers["admin"].wait_for(status_of(elsewhere, "Waiting"))
        # Each reader has seen its own job's last event, so it would have seen alice's too.
        readers["bob"].wait_for(status_of(marker, "Waiting"))
        readers["other_vo"].wait_for(status_of(elsewhere, "Waiting"))
        for name in ("bob", "other_vo"):
            seen = {e["data"]["job_id"] for e in readers[name].seen}
            assert secret not in seen, name
        assert {e["data"]["job_id"] for e in readers["alice"].seen} <= {secret}
    finally:
        for reader in readers.values():
            reader.close()
    pilot = FakePilot(coord, vo)
    refused = requests.get(coord.api("/events"), headers=pilot.headers(), timeout=5)
    assert refused.status_code == 403
    assert requests.get(coord.api("/events"), timeout=5).status_code == 401


def test_resume_by_last_event_id_after_a_restart(tmp_path: Path) -> None:
    coord = launch_coordinator(tmp_path / "c")
    try:
        alice = User(coord, "vo1")
        with stream(alice) as events:
            time.sleep(0.5)
            (first,) = alice.submit()
            last_seen = events.wait_for(status_of(first, "Waiting"))["id"]
        (missed,) = alice.submit()  # while nobody listens
        assert alice.post(f"/jobs/{missed}/kill").status_code == 200
        _stop(coord.process)
        coord = launch_coordinator(coord.data_dir, port=int(coord.url.rsplit(":", 1)[1]))
        alice = User(coord, "vo1")
        headers = {**alice.headers(), "Last-Event-ID": str(last_seen)}
        with EventReader(coord.api("/events"), headers, logs="false") as resumed:
            killed = resumed.wait_for(status_of(missed, "Killed"))
            replayed = [(e["data"]["job_id"], e["data"]["status"]) for e in resumed.seen]
        assert replayed == [(missed, "Waiting"), (missed, "Killed")]
        assert killed["id"] > last_seen
    finally:
        _stop_and_check(coord)


def test_a_client_too_far_behind_is_told_to_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDPILOT_EVENT_RETENTION_S", "1")
    coord = launch_coordinator(tmp_path / "c", sweep_interval_s=0.2)
    try:
        alice = User(coord, "vo1")
        alice.submit()  # event 1: the client below saw it
        alice.submit()  # event 2: it missed this one...
        time.sleep(2.0)  # ...which is now older than the retention, and swept
        alice.submit()
        headers = {**alice.headers(), "Last-Event-ID": "1"}
        with EventReader(coord.api("/events"), headers) as events:
            reset = events.wait_for(lambda e: e["event"] == "reset")
            assert reset["id"] >= 1
    finally:
        _stop_and_check(coord)


def test_a_hole_in_the_ids_is_waited_for_then_passed() -> None:
    """PostgreSQL may commit id 7 after id 8: the cursor stops before 7 until it shows or
    ``gap_wait_s`` passes (a rolled-back transaction used it up)."""
    now = [0.0]
    cursor = EventCursor(position=5, gap_wait_s=2.0, clock=lambda: now[0])
    assert cursor.advance([6, 8, 9]) == 6
    now[0] = 1.0
    assert cursor.advance([7, 8, 9]) == 9  # 7 committed late: nothing skipped
    assert cursor.advance([11]) == 9
    now[0] = 3.5
    assert cursor.advance([11]) == 11  # 10 never came
    assert cursor.holes == {}
