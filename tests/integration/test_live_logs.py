"""Live job logs as a user sees them: ``gridpilot logs --follow`` and ``peek`` while a real
pilot runs the job, and the whole log once it is done."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import Pilot, User

TICKER = """#!/bin/sh
i=0
while [ $i -lt 20 ]; do
    echo "tick $i $(date +%s.%N)"
    echo "warn $i" >&2
    i=$((i + 1))
    sleep 0.2
done
"""


def follow(user: User, job_id: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "client", "logs", str(job_id), "--follow", "--poll-s", "0.2"],
        cwd=user.cwd,
        env=user.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


@pytest.mark.slow
def test_lines_show_up_while_the_job_runs_and_all_of_them_after(user: User, pilot: Pilot) -> None:
    (user.cwd / "ticker.sh").write_text(TICKER)
    (job_id,) = user.submit(
        """
        Executable = "ticker.sh";
        InputSandbox = {"ticker.sh"};
        StdOutput = "StdOut"; StdError = "StdErr";
        OutputSandbox = {"StdOut", "StdErr"};
        """
    )
    follower = follow(user, job_id)
    process = pilot.start(idle_timeout_s=1)
    latencies_s: list[float] = []
    peeked = ""
    try:
        assert follower.stdout is not None
        for line in follower.stdout:  # ends when the job is final and the log complete
            latencies_s.append(time.time() - float(line.split()[2]))
            if len(latencies_s) == 10:
                peeked = user.run("peek", str(job_id), "--lines", "3").stdout
        assert follower.wait(timeout=30) == 0, follower.stderr
        assert process.wait(timeout=60) == 0
    finally:
        for child in (follower, process):
            if child.poll() is None:
                child.kill()
                child.wait()
    assert user.status(job_id)["status"] == "Done"
    assert len(latencies_s) == 20
    # Shipped every second, polled every 0.2 s: a line is visible within about 1.2 s.
    assert statistics.median(latencies_s) < 1.5, latencies_s
    assert max(latencies_s) < 2.5, latencies_s
    peeked_lines = peeked.splitlines()
    assert 1 <= len(peeked_lines) <= 3 and peeked_lines[-1].startswith("tick "), peeked

    stdout = user.run("logs", str(job_id)).stdout
    assert [line.split()[1] for line in stdout.splitlines()] == [str(i) for i in range(20)]
    stderr = user.run("logs", str(job_id), "--stream", "stderr").stdout
    assert stderr == "".join(f"warn {i}\n" for i in range(20))
    user.run("get-output", str(job_id))
    assert (user.cwd / str(job_id) / "StdOut").read_text() == stdout
