"""Exactly-once matching: many pilots at once, and a coordinator killed mid-way.

Each pilot is a thread with its own ``requests.Session`` against a real coordinator
process; the proof reads the coordinator's SQLite file once the server has stopped.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import RunningCoordinator, launch_coordinator
from tests.coordinator.matching_calls import Pilot, register_pilot, submit_jobs


def drain(
    url_of: Callable[[], str],
    coord: RunningCoordinator,
    pilot: Pilot,
    taken: list[int],
    n: int,
    deadline_s: float,
) -> None:
    """Ask for ``n`` jobs at a time until none is left; ride out a coordinator restart."""
    pilot_id, token = pilot
    with requests.Session() as session:
        while time.monotonic() < deadline_s:
            try:
                reply = session.post(
                    f"{url_of()}/api/v1/pilots/{pilot_id}/match",
                    json={"n": n, "cores_free": n},
                    headers=coord.headers(token),
                    timeout=30,
                )
            except requests.ConnectionError:
                time.sleep(0.05)  # the coordinator is restarting
                continue
            if reply.status_code >= 500 or reply.status_code == 429:
                time.sleep(0.05)
                continue
            assert reply.status_code == 200, reply.text
            jobs = reply.json()["jobs"]
            if not jobs:
                return
            taken.extend(job["job_id"] for job in jobs)


def run_pilots(
    url_of: Callable[[], str], coord: RunningCoordinator, pilots: list[Pilot], n: int
) -> list[list[int]]:
    taken: list[list[int]] = [[] for _ in pilots]
    deadline_s = time.monotonic() + 240
    threads = [
        threading.Thread(target=drain, args=(url_of, coord, pilot, share, n, deadline_s))
        for pilot, share in zip(pilots, taken)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return taken


def stop(coord: RunningCoordinator) -> None:
    coord.process.terminate()
    coord.process.wait(timeout=30)
    assert "Traceback" not in coord.log(), coord.log()


def matches_per_job(
    coord: RunningCoordinator,
) -> tuple[dict[int, int], dict[int, tuple[str, str]]]:
    """From the stopped coordinator's database: how many times each job entered Matched,
    and each job's (status, pilot)."""
    entered = collections.Counter(
        job_id for (job_id,) in coord.sql("SELECT job_id FROM job_history WHERE status='Matched'")
    )
    now = {
        job_id: (status, pilot_id)
        for job_id, status, pilot_id in coord.sql("SELECT job_id, status, pilot_id FROM jobs")
    }
    return dict(entered), now


@pytest.mark.slow
def test_50_pilots_drain_10000_jobs_each_matched_exactly_once(tmp_path: Path) -> None:
    coord = launch_coordinator(tmp_path / "coordinator")
    try:
        job_ids = submit_jobs(coord, "vo1", copies=10_000)
        pilots = [register_pilot(coord, "vo1") for _ in range(50)]
        started = time.monotonic()
        taken = run_pilots(lambda: coord.url, coord, pilots, n=20)
        elapsed_s = time.monotonic() - started
    finally:
        stop(coord)
    everything = [job_id for share in taken for job_id in share]
    assert len(everything) == 10_000
    assert len(set(everything)) == 10_000, "a job was given to two pilots"
    assert set(everything) == set(job_ids)
    assert sum(1 for share in taken if share) >= 25, "the pilots did not really compete"
    entered, now = matches_per_job(coord)
    assert set(entered.values()) == {1}
    assert len(entered) == 10_000
    owner = {job_id: pilot[0] for pilot, share in zip(pilots, taken) for job_id in share}
    assert all(now[job_id] == ("Matched", owner[job_id]) for job_id in job_ids)
    assert elapsed_s < 120


@pytest.mark.slow
def test_a_coordinator_killed_mid_match_never_gives_a_job_twice(tmp_path: Path) -> None:
    data_dir = tmp_path / "coordinator"
    first = launch_coordinator(data_dir)
    current = {"coord": first}
    total = 3000
    submit_jobs(first, "vo1", copies=total)
    pilots = [register_pilot(first, "vo1") for _ in range(20)]
    taken: list[list[int]] = []

    def crash_and_restart() -> None:
        while _matched_so_far(first) < total // 3:
            time.sleep(0.02)
        first.process.send_signal(signal.SIGKILL)  # no graceful end: transactions cut off
        first.process.wait(timeout=30)
        current["coord"] = launch_coordinator(data_dir)

    restarter = threading.Thread(target=crash_and_restart)
    restarter.start()
    try:
        taken = run_pilots(lambda: current["coord"].url, first, pilots, n=5)
    finally:
        restarter.join()
        stop(current["coord"])
    assert current["coord"] is not first, "the coordinator was never restarted"
    received = [job_id for share in taken for job_id in share]
    assert len(received) == len(set(received)), "a job was given to two pilots"
    entered, now = matches_per_job(current["coord"])
    assert set(entered.values()) == {1}, "a job entered Matched twice"
    assert len(entered) == total and all(status == "Matched" for status, _ in now.values())
    # A reply cut off by the crash may lose a claim (the lease sweeper reschedules those);
    # at most one request per pilot was in flight.
    assert total - len(received) <= len(pilots) * 5
    owner = {job_id: pilot[0] for pilot, share in zip(pilots, taken) for job_id in share}
    assert all(now[job_id][1] == owner[job_id] for job_id in received)


def _matched_so_far(coord: RunningCoordinator) -> int:
    try:
        page = requests.get(f"{coord.url}/metrics", timeout=5).text
    except requests.ConnectionError:
        return 0
    for line in page.splitlines():
        if line.startswith("gridpilot_jobs_matched_total "):
            return int(float(line.split()[1]))
    return 0
