"""A real pilot running several jobs heartbeats them all in one request per interval, and a
kill sent through that batch stops only the job it was meant for."""

from __future__ import annotations

from tests.conftest import RunningCoordinator
from tests.coordinator.test_metrics import scrape
from tests.integration.conftest import Pilot, User

SLEEP_S = 6


def test_three_jobs_share_one_heartbeat_request_per_interval(
    user: User, pilot: Pilot, coordinator: RunningCoordinator
) -> None:
    job_ids = [
        user.submit(f'Executable = "/bin/sleep"; Arguments = "{SLEEP_S}";')[0] for _ in "abc"
    ]
    before = scrape(coordinator)
    finished = pilot.run(idle_timeout_s=1, extra=["--cores", "3"])
    assert finished.returncode == 0, finished.stderr
    assert {user.status(job_id)["status"] for job_id in job_ids} == {"Done"}
    after = scrape(coordinator)
    requests_sent = (
        after["gridpilot_pilot_heartbeats_total"] - before["gridpilot_pilot_heartbeats_total"]
    )
    jobs_renewed = after["gridpilot_heartbeats_total"] - before["gridpilot_heartbeats_total"]
    # The coordinator asks for a heartbeat every second: the jobs ran ~6 intervals together.
    assert SLEEP_S - 2 <= requests_sent <= 2 * SLEEP_S, (requests_sent, jobs_renewed)
    # All three aligned is 3 a request (fewer in the first and last: jobs start and end
    # a little apart); per-job heartbeats would be no batched request at all.
    assert jobs_renewed >= 2 * requests_sent, (requests_sent, jobs_renewed)


def test_a_kill_through_the_batch_stops_only_its_job(
    user: User, pilot: Pilot, coordinator: RunningCoordinator
) -> None:
    jdl = 'Executable = "/bin/sleep"; Arguments = "8";'
    spared, doomed = user.submit(jdl)[0], user.submit(jdl)[0]
    running = pilot.start(idle_timeout_s=1, extra=["--cores", "2"])
    try:
        user.wait_for(doomed, {"Running"}, timeout_s=30)
        user.run("kill", str(doomed))
        assert user.wait_for(doomed, {"Killed"}, timeout_s=10)["status"] == "Killed"
        assert user.status(spared)["status"] == "Running"
        assert user.wait_for(spared, {"Done"}, timeout_s=30)["status"] == "Done"
    finally:
        running.terminate()
        running.communicate(timeout=30)
