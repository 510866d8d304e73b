"""A pilot that dies with its job running: the job stalls, is rescheduled and is run to Done
by another pilot. Real coordinator, real pilot processes, the ``gridpilot`` CLI."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from protocol import Role
from tests.integration.conftest import Pilot, User

LEASES = {
    "heartbeat_interval_s": 0.5,
    "heartbeat_timeout_s": 2,
    "stalled_grace_s": 1,
    "sweep_interval_s": 0.3,
    "match_retry_after_s": 0.5,
}
JDL = """Executable = "/bin/sh"; Arguments = "-c 'sleep 4; echo finished'";
StdOutput = "StdOut"; OutputSandbox = {"StdOut"};"""


@pytest.mark.slow
def test_job_of_a_killed_pilot_is_rescheduled_and_done_elsewhere(
    start_coordinator: Callable[..., Any], tmp_path: Path
) -> None:
    coord = start_coordinator(**LEASES)
    home = tmp_path / "alice"
    home.mkdir()
    user = User(coord.url, coord.token(role="user", subject="alice", vo="vo1"), home)
    pilots = []
    for name in ("first", "second"):
        root = tmp_path / name
        root.mkdir()
        token = coord.token(role=Role.PILOT.value, subject=f"factory-{name}", vo="vo1")
        pilots.append(Pilot(coord.url, token, root))
    (job_id,) = user.submit(JDL)

    first = pilots[0].start(idle_timeout_s=30)
    try:
        user.wait_for(job_id, {"Running"})
        first.send_signal(signal.SIGKILL)  # no drain, no report: the node is gone
        first.wait(timeout=10)
        user.wait_for(job_id, {"Stalled"}, timeout_s=20)
        user.wait_for(job_id, {"Waiting"}, timeout_s=20)
    finally:
        _reap(first)

    second = pilots[1].run(idle_timeout_s=2)
    assert second.returncode == 0, second.stderr
    info = user.wait_for(job_id, {"Done"}, timeout_s=30)
    assert info["reschedule_count"] == 1
    history = user.run("logging-info", str(job_id)).stdout.splitlines()[1:]
    statuses = [line.split()[0] for line in history]
    lost = statuses.index("Stalled")
    assert statuses[lost - 1 : lost + 6] == [
        "Running", "Stalled", "Failed", "Rescheduled", "Waiting", "Matched", "Running",
    ]  # fmt: skip
    assert statuses[-1] == "Done"
    user.run("get-output", str(job_id), "--dir", str(home / "out"))
    assert (home / "out" / str(job_id) / "StdOut").read_text() == "finished\n"


def _reap(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)
