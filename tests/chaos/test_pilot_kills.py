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

LEASES = {
    "heartbeat_interval_s": 0.5,
    "heartbeat_timeout_s": 2,
    "stalled_grace_s": 1,
    "sweep_interval_s": 0.3,
}


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
