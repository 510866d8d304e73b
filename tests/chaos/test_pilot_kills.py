"""A pilot SIGKILLed mid-job (issue 12, item 7 and the chaos suite): its payload dies with
it, the job is rescheduled and run to Done by another pilot, and the two copies never run
at the same time. Before the sentinel, the orphaned payload ran on to its end under init
while the second copy ran too."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from tests.chaos.conftest import ChaosRun, Execution
from tests.chaos.proxy import Faults, FaultyProxy

LEASES = {
    "heartbeat_interval_s": 0.5,
    "heartbeat_timeout_s": 2,
    "stalled_grace_s": 1,
    "match_timeout_s": 3,
    "sweep_interval_s": 0.3,
}
"""Short leases. The match timeout counts too: the coordinator offers
``running_in_heartbeat``, so a pilot killed within half a second of its payload's start
(before the start rode a heartbeat) leaves the job Matched, given back after it."""


def wait_for_execution(chaos: ChaosRun, count: int, timeout_s: float = 30.0) -> list[Execution]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = chaos.executions()
        if len(runs) >= count:
            return runs
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} executions after {timeout_s} s")


def gone_by(pid: int, timeout_s: float) -> float:
    """When ``pid`` was seen gone (wall clock, like the ledger's times)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return time.time()
        except psutil.NoSuchProcess:
            return time.time()
        time.sleep(0.02)
    raise AssertionError(f"payload {pid} still runs {timeout_s} s after its pilot was killed")


@pytest.mark.parametrize("chaos", [LEASES], indirect=True)
def test_killed_pilots_payload_dies_and_the_job_runs_once_elsewhere(chaos: ChaosRun) -> None:
    (job_id,) = chaos.submit(1, lines=20, pause_s=4)
    first = chaos.start_pilot(chaos.pilot("first"), idle_timeout_s=30, cores=1)
    (orphan,) = wait_for_execution(chaos, 1)
    first.send_signal(signal.SIGKILL)  # the node is gone: no drain, no report
    first.wait(timeout=10)
    orphan_gone_at = gone_by(orphan.pid, timeout_s=5)

    chaos.start_pilot(chaos.pilot("second"), idle_timeout_s=3, cores=1)
    chaos.check_exactly_once_and_byte_exact([job_id], timeout_s=60, interrupted=1)
    killed, finished = chaos.executions()
    assert killed.pid == orphan.pid
    assert killed.ended_at is None  # the first copy never reached its end
    assert finished.ended_at is not None
    assert finished.started_at > orphan_gone_at  # never two copies at once
    job = chaos.jobs([job_id])[job_id]
    assert job["reschedule_count"] == 1


PARTITION_LEASES = {
    "heartbeat_interval_s": 0.5,
    "heartbeat_timeout_s": 2,
    "stalled_grace_s": 4,
    "match_timeout_s": 3,
    "sweep_interval_s": 0.3,
}
"""A Running job is given away after 6 s of silence, a Matched one after 3 s: the pilot
fences by the lease of the state the job has at the coordinator when the cut comes."""


@pytest.mark.parametrize("chaos", [PARTITION_LEASES], indirect=True)
def test_a_cut_off_pilot_stops_its_payload_before_the_job_is_given_to_another(
    chaos: ChaosRun,
) -> None:
    """At most one running copy while the pilot lives, across a network partition: the
    coordinator gives the job away after its lease (6 s here once Running: heartbeat timeout +
    stalled grace; 3 s while still Matched, if the cut came before the payload's start rode a
    heartbeat); the pilot, unable to renew the lease, stops its payload before that."""
    proxy = FaultyProxy(chaos.coordinator.port, Faults(reset=0, lost=0, cut=0, delay=0))
    try:
        (job_id,) = chaos.submit(1, lines=10, pause_s=10)
        cut_off = chaos.pilot("cut-off", url=proxy.url)
        chaos.start_pilot(
            cut_off,
            idle_timeout_s=60,
            cores=1,
            env={"GRIDPILOT_REQUEST_TIMEOUT_S": "1", "GRIDPILOT_KILL_GRACE_S": "1"},
        )
        (first,) = wait_for_execution(chaos, 1)
        proxy.partition(True)
        first_gone_at = gone_by(first.pid, timeout_s=15)
        chaos.start_pilot(chaos.pilot("other"), idle_timeout_s=3, cores=1)
        chaos.check_exactly_once_and_byte_exact([job_id], timeout_s=60, interrupted=1)
        stopped, finished = chaos.executions()
        assert stopped.pid == first.pid and stopped.ended_at is None
        assert finished.started_at > first_gone_at  # never two copies at once
        assert "lease not renewed" in cut_off.log()
    finally:
        proxy.partition(False)
        proxy.stop()
