"""What the pilot reports about a job that failed because of the node, not the payload."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol import Role
from tests.conftest import RunningCoordinator
from tests.integration.conftest import Pilot, User
from tests.integration.pilot_probe import history, wait_until


@pytest.mark.slow
def test_infrastructure_failure_is_reported_as_such_and_rescheduled(
    start_coordinator: Callable[..., RunningCoordinator], tmp_path: Path
) -> None:
    # The coordinator refuses sandboxes over 1 kB: the output upload fails, which is the
    # node's side failing (stage-out), not the payload, so the job must come back.
    coordinator = start_coordinator(max_sandbox_bytes=1024, match_retry_after_s=0.5)
    root = tmp_path / "t"
    (root / "alice").mkdir(parents=True)
    (root / "pilot").mkdir()
    user = User(coordinator.url, coordinator.token(role="user", subject="alice"), root / "alice")
    pilot_token = coordinator.token(role=Role.PILOT.value, subject="factory")
    pilot = Pilot(coordinator.url, pilot_token, root / "pilot")
    (job_id,) = user.submit(
        """Executable = "/bin/sh"; Arguments = "-c 'head -c 200000 /dev/urandom > big.bin'";
        OutputSandbox = {"big.bin"};"""
    )
    process = pilot.start(idle_timeout_s=30, extra=["--cores", "1"])
    try:
        wait_until(
            lambda: "Rescheduled" in [e["status"] for e in history(coordinator, job_id)],
            60,
            "the job to be rescheduled",
        )
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    entries = history(coordinator, job_id)
    statuses = [e["status"] for e in entries]
    rescheduled = statuses.index("Rescheduled")
    assert "Output Sandbox Upload Failed" in entries[rescheduled]["minor_status"], entries
    assert statuses[rescheduled + 1] == "Waiting", statuses  # back in the queue, not Failed
