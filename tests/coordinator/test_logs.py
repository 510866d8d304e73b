"""Live job logs and pilot logs against a real coordinator: offsets, retries, gaps, limits,
who may write and read, and concurrent appends."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User


def running_job(coord: RunningCoordinator, vo: str) -> tuple[User, FakePilot, int]:
    user, pilot = User(coord, vo), FakePilot(coord, vo)
    (job_id,) = user.submit()
    assert pilot.match() == [job_id]
    assert pilot.report(job_id, "Running").status_code == 200
    return user, pilot, job_id


def read(user: User, job_id: int, stream: str = "stdout", **params: int) -> requests.Response:
    reply = user.get(f"/jobs/{job_id}/logs/{stream}", **params)
    assert reply.status_code == 200, reply.text
    return reply


def test_chunks_append_and_read_back_with_offsets(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot, job_id = running_job(shared_coordinator, vo)
    assert pilot.append_log(job_id, b"hello ", 0).json() == {"next_offset": 6}
    assert pilot.append_log(job_id, b"world\n", 6).json() == {"next_offset": 12}
    assert pilot.append_log(job_id, b"oops\n", 0, stream="stderr").json()["next_offset"] == 5
    whole = read(user, job_id)
    assert whole.content == b"hello world\n"
    assert whole.headers["X-Log-Next-Offset"] == "12"
    assert whole.headers["X-Log-Complete"] == "false"
    part = read(user, job_id, offset=6, limit=3)
    assert (part.content, part.headers["X-Log-Next-Offset"]) == (b"wor", "9")
    assert read(user, job_id, "stderr").content == b"oops\n"


def test_retried_and_overlapping_chunks_are_stored_once(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot, job_id = running_job(shared_coordinator, vo)
    pilot.append_log(job_id, b"abcdef", 0)
    assert pilot.append_log(job_id, b"abcdef", 0).json()["next_offset"] == 6  # a retry
    assert pilot.append_log(job_id, b"defghi", 3).json()["next_offset"] == 9  # overlapping
    assert read(user, job_id).content == b"abcdefghi"


def test_a_gap_is_refused_with_the_offset_to_send_from(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot, job_id = running_job(shared_coordinator, vo)
    pilot.append_log(job_id, b"1234", 0)
    reply = pilot.append_log(job_id, b"lost-before-me", 10)
    assert reply.status_code == 409
    assert reply.json()["code"] == "log_gap"
    assert reply.json()["details"]["expected_offset"] == 4
    different = pilot.append_log(job_id, b"12X4", 0)
    assert (different.status_code, different.json()["code"]) == (409, "log_conflict")
    assert read(user, job_id).content == b"1234"


def test_log_is_complete_once_the_job_is_final_and_then_closed(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot, job_id = running_job(shared_coordinator, vo)
    pilot.append_log(job_id, b"last words\n", 0)
    pilot.report(job_id, "Done", exit_code=0)
    reply = read(user, job_id)
    assert (reply.content, reply.headers["X-Log-Complete"]) == (b"last words\n", "true")
    assert read(user, job_id, offset=5, limit=2).headers["X-Log-Complete"] == "false"
    late = pilot.append_log(job_id, b"more", 11)
    assert (late.status_code, late.json()["code"]) == (409, "log_conflict")


def test_who_may_write_and_read_a_job_log(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    user, pilot, job_id = running_job(coord, vo)
    pilot.append_log(job_id, b"secret", 0)
    other_pilot = FakePilot(coord, vo, subject="other-factory")
    lost = other_pilot.append_log(job_id, b"x", 6)
    assert (lost.status_code, lost.json()["code"]) == (409, "lease_lost")
    users_put = requests.put(
        coord.api(f"/jobs/{job_id}/logs/stdout"), data=b"x", headers=user.headers()
    )
    assert users_put.status_code == 403
    assert User(coord, vo, subject="bob").get(f"/jobs/{job_id}/logs/stdout").status_code == 404
    admin = User(coord, "another-vo", subject="ops", role="admin")
    assert read(admin, job_id).content == b"secret"
    bad_stream = user.get(f"/jobs/{job_id}/logs/stdin")
    assert (bad_stream.status_code, bad_stream.json()["code"]) == (400, "bad_request")


def test_chunk_and_total_limits(
    start_coordinator: Callable[..., RunningCoordinator], vo: str
) -> None:
    coord = start_coordinator(max_log_chunk_bytes=16, max_log_bytes=40)
    user, pilot, job_id = running_job(coord, vo)
    too_big = pilot.append_log(job_id, b"x" * 17, 0)
    assert (too_big.status_code, too_big.json()["code"]) == (413, "too_large")
    assert too_big.json()["details"]["max_bytes"] == 16
    for offset in (0, 16):
        assert pilot.append_log(job_id, b"o" * 16, offset).status_code == 200
    assert pilot.append_log(job_id, b"e" * 8, 0, stream="stderr").status_code == 200
    full = pilot.append_log(job_id, b"!", 32)
    assert full.status_code == 413
    assert "the log is full" in full.json()["message"]
    assert read(user, job_id).headers["X-Log-Size"] == "32"


def test_concurrent_retries_never_duplicate_bytes(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot, job_id = running_job(shared_coordinator, vo)
    chunks = [f"line {i:03d}\n".encode() for i in range(40)]
    expected = b"".join(chunks)
    starts = [sum(len(c) for c in chunks[:i]) for i in range(len(chunks))]
    errors: list[str] = []

    def ship() -> None:
        # Every thread sends the whole log in order, as retrying senders would.
        for chunk, start in zip(chunks, starts):
            reply = pilot.append_log(job_id, chunk, start)
            while reply.status_code == 409 and reply.json()["code"] == "log_gap":
                reply = pilot.append_log(job_id, chunk, start)
            if reply.status_code != 200:
                errors.append(reply.text)

    threads = [threading.Thread(target=ship) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert read(user, job_id, limit=10_000).content == expected


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=300), cuts=st.lists(st.integers(1, 299), max_size=8))
def test_any_chunking_with_replays_stores_exactly_the_stream(
    shared_coordinator: RunningCoordinator, data: bytes, cuts: list[int]
) -> None:
    user, pilot, job_id = running_job(shared_coordinator, "vo-log-property")
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for start, end in zip(bounds, bounds[1:]):
        assert pilot.append_log(job_id, data[start:end], start).status_code == 200
        # A replay of everything sent so far changes nothing.
        assert pilot.append_log(job_id, data[:end], 0).json()["next_offset"] == end
    assert read(user, job_id, limit=1000).content == data


def test_pilot_log_written_by_the_pilot_read_by_its_subject_and_admins(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    pilot = FakePilot(coord, vo, subject="factory-7")
    path = coord.api(f"/pilots/{pilot.pilot_id}/log")
    for offset, chunk in ((0, b"pilot starting\n"), (15, b"pilot done\n")):
        reply = requests.put(path, params={"offset": offset}, data=chunk, headers=pilot.headers())
        assert reply.status_code == 200, reply.text
    assert reply.json() == {"next_offset": 26}
    own = requests.get(path, headers=pilot.headers())
    assert own.content == b"pilot starting\npilot done\n"
    assert own.headers["X-Log-Next-Offset"] == "26"
    admin = User(coord, "ops-vo", subject="ops", role="admin")
    assert requests.get(path, headers=admin.headers()).content.endswith(b"done\n")
    stranger = FakePilot(coord, vo, subject="another-factory")
    assert requests.get(path, headers=stranger.headers()).status_code == 404
    foreign_put = requests.put(path, params={"offset": 26}, data=b"x", headers=stranger.headers())
    assert foreign_put.status_code == 404


@pytest.mark.parametrize("offset", [-1])
def test_negative_offsets_are_refused(
    shared_coordinator: RunningCoordinator, vo: str, offset: int
) -> None:
    user, pilot, job_id = running_job(shared_coordinator, vo)
    assert pilot.append_log(job_id, b"x", offset).status_code == 400
    assert user.get(f"/jobs/{job_id}/logs/stdout", offset=offset).status_code == 400
