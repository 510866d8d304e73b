"""A pilot leaves its slot in bounded time when the coordinator is gone (issue 12, item 6).

Before, after SIGTERM twice with the coordinator unreachable, a pilot went on retrying log
shipping and the sandbox upload for 16 minutes, long past any batch system's patience.
Now it exits within its drain grace plus ``exit_grace_s``; what it could not deliver (the
final report, the output sandbox) is in its spool, and the next pilot started in the same
work dir delivers it: the job ends as it did, with its output byte for byte.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.chaos.conftest import ChaosRun, expected_stdout
from tests.chaos.test_pilot_kills import wait_for_execution

DRAIN_GRACE_S = 3.0
EXIT_GRACE_S = 5.0
SLACK_S = 4.0
"""Start-up of the kill, the payload's own TERM grace and a loaded CI machine."""
EXIT_SIGNAL = 14
EXIT_UNREACHABLE = 11


def finish(process: subprocess.Popen[str], timeout_s: float) -> tuple[int, float, str]:
    started = time.monotonic()
    _, stderr = process.communicate(timeout=timeout_s)
    return process.returncode, time.monotonic() - started, stderr


def delivered_by_the_next_pilot(chaos: ChaosRun, job_id: int, status: str) -> dict[str, object]:
    chaos.coordinator.restart()
    chaos.pilots.clear()
    chaos.start_pilot(chaos.pilot("first"), idle_timeout_s=2, cores=1)  # the same work dir
    assert chaos.wait_pilots(timeout_s=60) == [0]
    job = chaos.wait_final([job_id], timeout_s=30)[job_id]
    assert job["status"] == status, job
    return job


@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_with_the_coordinator_gone_exits_in_bounded_time(
    chaos: ChaosRun, signals: int
) -> None:
    (job_id,) = chaos.submit(1, lines=50, pause_s=300)
    pilot = chaos.pilot("first")
    process = chaos.start_pilot(
        pilot,
        idle_timeout_s=30,
        cores=1,
        extra=["--drain-grace-s", str(DRAIN_GRACE_S)],
        env={"GRIDPILOT_EXIT_GRACE_S": str(EXIT_GRACE_S), "GRIDPILOT_KILL_GRACE_S": "1"},
    )
    wait_for_execution(chaos, 1)
    chaos.coordinator.kill()  # gone, and not coming back while the pilot is asked to leave
    process.send_signal(signal.SIGTERM)
    if signals == 2:
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
    code, took_s, stderr = finish(process, timeout_s=120)
    bound_s = (DRAIN_GRACE_S if signals == 1 else 0.5) + EXIT_GRACE_S + SLACK_S
    assert code == EXIT_SIGNAL, stderr
    assert took_s < bound_s, f"the pilot took {took_s:.1f} s to leave (bound {bound_s} s)"

    spool = pilot.workdir / "spool"
    record = json.loads((spool / f"job_{job_id}.json").read_text())
    assert record["update"]["status"] == "Killed"
    assert (spool / "outputs" / f"{record['update']['output_sandbox']}.tar.gz").is_file()

    job = delivered_by_the_next_pilot(chaos, job_id, "Killed")
    assert str(job["minor_status"]).startswith("Killed: pilot ")
    files = chaos.output_files(job)
    assert files["std.out"] == expected_stdout(job_id, 50)  # the whole of it, from the spool
    assert files["out.txt"] == f"output of job {job_id}\n".encode()
    assert expected_stdout(job_id, 50).startswith(chaos.stored_log(job_id))
    assert not (spool / f"job_{job_id}.json").exists()
    assert list((spool / "outputs").iterdir()) == []


def test_without_a_signal_retries_stop_after_the_give_up_time(chaos: ChaosRun) -> None:
    """The coordinator dies while a job runs: the job ends, its upload and report are given
    up after max_retry_s / report_retry_s and kept, and the pilot exits 11 in bounded time."""
    (job_id,) = chaos.submit(1, lines=30, pause_s=2)
    pilot = chaos.pilot("first")
    process = chaos.start_pilot(
        pilot,
        idle_timeout_s=60,
        cores=1,
        env={"GRIDPILOT_MAX_RETRY_S": "4", "GRIDPILOT_REPORT_RETRY_S": "2"},
    )
    wait_for_execution(chaos, 1)
    chaos.coordinator.kill()
    code, took_s, stderr = finish(process, timeout_s=120)
    assert code == EXIT_UNREACHABLE, stderr
    # payload 2 s + upload given up at 4 s + report at 2 s + matching given up at 4 s
    assert took_s < 2 + 4 + 2 + 4 + 30 + SLACK_S
    assert (pilot.workdir / "spool" / f"job_{job_id}.json").is_file()

    job = delivered_by_the_next_pilot(chaos, job_id, "Done")
    files = chaos.output_files(job)
    assert files["std.out"] == expected_stdout(job_id, 30)
    assert files["out.txt"] == f"output of job {job_id}\n".encode()
