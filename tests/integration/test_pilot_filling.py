"""A pilot fills its node, stops asking when time runs short, and exits when idle."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from tests.conftest import RunningCoordinator
from tests.integration.conftest import Pilot, User
from tests.integration.pilot_probe import first_time, history

PHASES = {"match", "stage_in", "setup", "payload", "stage_out"}


def _sleep_jdl(seconds: float, cores: int = 1, extra: str = "") -> str:
    return (
        f'Executable = "/bin/sleep"; Arguments = "{seconds}"; NumberOfProcessors = {cores}; {extra}'
    )


@pytest.mark.slow
def test_mixed_one_and_two_core_jobs_fill_four_cores_and_never_more(
    user: User, pilot: Pilot, coordinator: RunningCoordinator
) -> None:
    cores_of: dict[int, int] = {}
    for cores, count in ((2, 2), (1, 4)):
        for _ in range(count):
            (job_id,) = user.submit(_sleep_jdl(2, cores))
            cores_of[job_id] = cores

    finished = pilot.run(idle_timeout_s=2, extra=["--cores", "4"])
    assert finished.returncode == 0, finished.stderr

    spans = []
    for job_id, cores in cores_of.items():
        entries = history(coordinator, job_id)
        assert entries[-1]["status"] == "Done", entries
        spans.append((first_time(entries, "Running"), first_time(entries, "Done"), cores))
    events = sorted(
        [(start, cores) for start, _, cores in spans] + [(end, -c) for _, end, c in spans]
    )
    in_use, peak = 0, 0
    for _, change in events:  # at equal times the end (negative) sorts first
        in_use += change
        peak = max(peak, in_use)
    assert peak == 4, f"the pilot never used its 4 cores at once: {spans}"
    serial_s = sum(end - start for start, end, _ in spans)
    wall_s = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    assert wall_s < serial_s / 2, (
        f"jobs did not overlap: wall {wall_s:.1f} s, serial {serial_s:.1f} s"
    )


def test_final_report_carries_phase_timings_cpu_and_memory(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit(
        'Executable = "/bin/sh"; '
        "Arguments = \"-c 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'\";"
    )
    assert pilot.run().returncode == 0
    info = user.status(job_id)
    assert info["status"] == "Done"
    assert set(info["timings_s"]) == PHASES
    assert all(value >= 0 for value in info["timings_s"].values())
    assert info["cpu_s"] > 0
    assert isinstance(info["max_rss_bytes"], int)


def test_pilot_with_too_little_time_left_takes_no_job_and_exits_0(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit(_sleep_jdl(1))
    finished = pilot.run(extra=["--time-left-s", "100"])  # default min_time_left_s is 300
    assert finished.returncode == 0, finished.stderr
    assert re.search(
        r"(99|100) s left in the batch slot, less than min_time_left_s \(300 s\)", finished.stderr
    )
    assert "job " + str(job_id) not in finished.stderr
    assert user.status(job_id)["status"] == "Waiting"


@pytest.mark.slow
def test_jobs_needing_more_time_than_is_left_are_not_taken(user: User, pilot: Pilot) -> None:
    (too_long,) = user.submit(_sleep_jdl(0.1, extra="CPUTime = 1000;"))
    (fits,) = user.submit(_sleep_jdl(0.1, extra="CPUTime = 100;"))
    finished = pilot.run(extra=["--time-left-s", "400", "--min-time-left-s", "60"])
    assert finished.returncode == 0, finished.stderr
    assert user.status(fits)["status"] == "Done"
    assert user.status(too_long)["status"] == "Waiting"


@pytest.mark.slow
def test_pilot_stops_asking_when_the_slot_runs_out_during_a_job(
    user: User, pilot: Pilot, coordinator: RunningCoordinator
) -> None:
    job_ids = user.submit(_sleep_jdl(4)) + user.submit(_sleep_jdl(4))
    finished = pilot.run(
        idle_timeout_s=30, extra=["--cores", "1", "--time-left-s", "7", "--min-time-left-s", "4"]
    )
    assert finished.returncode == 0, finished.stderr
    assert "less than min_time_left_s (4 s): asking for no more jobs" in finished.stderr
    statuses = sorted(user.status(job_id)["status"] for job_id in job_ids)
    assert statuses == ["Done", "Waiting"]


def _log_time(line: str) -> float:
    stamp = line.split(" ", 2)[:2]
    return datetime.strptime(" ".join(stamp), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_idle_pilot_exits_0_after_its_idle_timeout(pilot: Pilot) -> None:
    finished = pilot.run(idle_timeout_s=3)
    assert finished.returncode == 0, finished.stderr
    lines = pilot.log().splitlines()
    registered = next(line for line in lines if "registered as pilot" in line)
    idle = next(line for line in lines if "no work for 3 s: exiting" in line)
    waited_s = _log_time(idle) - _log_time(registered)
    assert 3.0 <= waited_s < 4.5, waited_s
