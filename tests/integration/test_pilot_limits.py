"""The pilot applies the site's watchdog settings to the jobs it runs."""

from __future__ import annotations

from tests.integration.conftest import Pilot, User


def test_a_job_over_its_wall_time_is_stopped_by_the_pilots_watchdog(
    user: User, pilot: Pilot
) -> None:
    (job_id,) = user.submit(
        'Executable = "/bin/sleep"; Arguments = "60"; WallTime = 2;'
        ' StdOutput = "StdOut"; OutputSandbox = {"StdOut"};'
    )
    site = {"GRIDPILOT_WALL_TIME_FACTOR": "1", "GRIDPILOT_TIME_LIMIT_MARGIN_S": "0"}
    finished = pilot.run(idle_timeout_s=1, timeout_s=60, env=site)
    assert finished.returncode == 0, finished.stderr
    info = user.status(job_id)
    assert info["status"] == "Failed"
    assert info["minor_status"].startswith("Wall time limit exceeded"), info["minor_status"]
    assert info["timings_s"]["payload"] < 20
