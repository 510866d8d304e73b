"""A pilot refuses or stops taking work for the node's sake, and says why."""

from __future__ import annotations

import shutil
from typing import Callable

import pytest
import requests

from tests.conftest import RunningCoordinator
from tests.integration.conftest import Pilot, User
from tests.integration.pilot_probe import pilot_id_from, pilot_record, wait_until

EXIT_FATAL_CHECK = 10
EXIT_BLACK_HOLE = 13
BATCH_ENV = {"SLURM_JOB_ID": "4242", "SLURM_CLUSTER_NAME": "cluster-a"}


def test_failed_fatal_check_registers_refusal_with_batch_facts_and_exits_10(
    user: User, pilot: Pilot, coordinator: RunningCoordinator
) -> None:
    (job_id,) = user.submit('Executable = "/bin/true";')
    config = pilot.write_config("checks:\n  options:\n    disk: {min_free_mb: 1000000000}\n")
    finished = pilot.run(extra=["--config", str(config), "--site", "LCG.Test.org"], env=BATCH_ENV)
    assert finished.returncode == EXIT_FATAL_CHECK, finished.stderr
    assert "fatal check disk failed" in finished.stderr
    assert user.status(job_id)["status"] == "Waiting"

    record = pilot_record(coordinator, pilot_id_from(finished.stderr))
    assert record["accepting_work"] is False
    assert "fatal check disk failed" in record["refuse_reason"]
    assert record["site"] == "LCG.Test.org"
    assert record["ce"] == "cluster-a"
    assert (record["batch_system"], record["batch_job_id"]) == ("slurm", "4242")
    disk = next(check for check in record["checks"] if check["name"] == "disk")
    assert disk["status"] == "fail"


@pytest.mark.slow
def test_fatal_check_failing_on_recheck_drains_and_exits_10(
    user: User, pilot: Pilot, coordinator: RunningCoordinator
) -> None:
    scratch = pilot.root / "scratch"
    scratch.mkdir()
    config = pilot.write_config(
        "pilot:\n  recheck_interval_s: 0.5\n"
        f"checks:\n  options:\n    disk: {{path: '{scratch}', min_free_mb: 1}}\n"
    )
    (running,) = user.submit('Executable = "/bin/sleep"; Arguments = "6";')
    process = pilot.start(idle_timeout_s=30, extra=["--config", str(config), "--cores", "1"])
    try:
        user.wait_for(running, {"Running"}, timeout_s=60)
        (queued,) = user.submit('Executable = "/bin/true";')
        shutil.rmtree(scratch)  # the scratch disk goes away under the pilot
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == EXIT_FATAL_CHECK, stderr
    assert "taking no more jobs, draining" in stderr
    assert user.status(running)["status"] == "Done"
    assert user.status(queued)["status"] == "Waiting"
    record = pilot_record(coordinator, pilot_id_from(stderr))
    assert record["accepting_work"] is False
    assert "fatal check disk failed" in record["refuse_reason"]


@pytest.mark.slow
def test_site_probe_turning_critical_at_its_own_interval_drains_and_exits_10(
    user: User, pilot: Pilot, coordinator: RunningCoordinator
) -> None:
    probes, broken = pilot.root / "probes", pilot.root / "scratch-broken"
    probes.mkdir()
    probe = probes / "scratch.sh"
    probe.write_text(
        f'#!/bin/sh\nif [ -e "{broken}" ]; then echo "scratch is gone"; exit 2; fi\n'
        'echo "scratch mounted"\n'
    )
    probe.chmod(0o755)
    config = pilot.write_config(
        f"checks:\n  script_dirs: ['{probes}']\n"
        "  settings:\n    scratch: {fatal: true, interval_s: 0.5}\n"
    )
    (running,) = user.submit('Executable = "/bin/sleep"; Arguments = "6";')
    process = pilot.start(idle_timeout_s=30, extra=["--config", str(config), "--cores", "1"])
    try:
        user.wait_for(running, {"Running"}, timeout_s=60)
        broken.touch()  # the site probe goes critical between two jobs' worth of time
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == EXIT_FATAL_CHECK, stderr
    assert user.status(running)["status"] == "Done"
    record = pilot_record(coordinator, pilot_id_from(stderr))
    assert record["refuse_reason"] == "fatal check scratch failed: scratch is gone"


@pytest.mark.slow
def test_black_hole_guard_stops_after_five_fast_failures_of_several_owners_and_exits_13(
    make_user: Callable[..., User], pilot: Pilot, coordinator: RunningCoordinator
) -> None:
    users = [make_user("alice"), make_user("bob")]
    submitted = [
        (users[i % 2], users[i % 2].submit('Executable = "/bin/false";')[0]) for i in range(7)
    ]
    finished = pilot.run(idle_timeout_s=30, extra=["--cores", "1"])
    assert finished.returncode == EXIT_BLACK_HOLE, finished.stderr
    assert (
        "black-hole guard: 5 jobs in a row failed within 60 s of starting "
        "(0 infrastructure failures, 2 owner(s))"
    ) in finished.stderr
    statuses = [owner.status(job_id)["status"] for owner, job_id in submitted]
    assert statuses.count("Failed") == 5
    assert statuses.count("Waiting") == 2
    record = pilot_record(coordinator, pilot_id_from(finished.stderr))
    assert record["accepting_work"] is False
    assert "black-hole guard" in record["refuse_reason"]


@pytest.mark.slow
def test_one_users_failing_jobs_do_not_stop_the_pilot_for_the_others(
    make_user: Callable[..., User], pilot: Pilot, coordinator: RunningCoordinator
) -> None:
    """Issue 12, item 9: ten fast failures of one owner are that owner's, not the node's."""
    broken, other = make_user("carol"), make_user("dave")
    failing = [broken.submit('Executable = "/bin/false";')[0] for _ in range(10)]
    finished = pilot.run(idle_timeout_s=3, extra=["--cores", "1"])
    assert finished.returncode == 0, finished.stderr
    assert "black-hole" not in finished.stderr
    assert {broken.status(job_id)["status"] for job_id in failing} == {"Failed"}
    (fine,) = other.submit('Executable = "/bin/true";')
    assert pilot.run(idle_timeout_s=2, extra=["--cores", "1"]).returncode == 0
    assert other.status(fine)["status"] == "Done"


def test_the_pilot_log_is_uploaded_at_exit(pilot: Pilot, coordinator: RunningCoordinator) -> None:
    finished = pilot.run(idle_timeout_s=0.5)
    assert finished.returncode == 0, finished.stderr
    pilot_id = pilot_id_from(finished.stderr)
    admin = coordinator.token(role="admin", subject="root")

    def uploaded() -> bytes:
        reply = requests.get(
            coordinator.api(f"/pilots/{pilot_id}/log"),
            headers=coordinator.headers(admin),
            timeout=10,
        )
        return reply.content if reply.status_code == 200 else b""

    wait_until(lambda: b"no work for" in uploaded(), 5, "the pilot log at the coordinator")
    stored = uploaded()
    assert pilot.log().encode()[: len(stored)] == stored
