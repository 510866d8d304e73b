"""Batch-system signals to a real pilot process running real payloads."""

from __future__ import annotations

import signal
import subprocess

import psutil
import pytest

from tests.integration.conftest import Pilot, User
from tests.integration.pilot_probe import wait_until

EXIT_SIGNAL = 14
TREE_JDL = (
    'Executable = "/bin/sh"; Arguments = "-c \'sleep 300 & sleep 300; wait\'"; '
    'StdOutput = "StdOut"; OutputSandbox = {"StdOut"};'
)


def _payload_tree(process: subprocess.Popen[str]) -> list[psutil.Process]:
    """Every process below the pilot that is not the pilot's own helper (check children)."""
    children = psutil.Process(process.pid).children(recursive=True)
    return [p for p in children if "sleep" in " ".join(_cmdline(p))]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _finish(process: subprocess.Popen[str], timeout_s: float = 60) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


@pytest.mark.slow
def test_first_sigterm_drains_running_job_and_takes_no_new_one(user: User, pilot: Pilot) -> None:
    (running,) = user.submit('Executable = "/bin/sleep"; Arguments = "6";')
    process = pilot.start(idle_timeout_s=30, extra=["--cores", "1"])
    try:
        user.wait_for(running, {"Running"}, timeout_s=60)
        (queued,) = user.submit('Executable = "/bin/true";')
        process.send_signal(signal.SIGTERM)
        code, stderr = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == EXIT_SIGNAL, stderr
    assert "SIGTERM: taking no new jobs, letting 1 running job(s) finish" in stderr
    assert user.status(running)["status"] == "Done"
    assert user.status(queued)["status"] == "Waiting"


def test_second_signal_kills_payload_tree_and_reports_it_killed(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit(TREE_JDL)
    process = pilot.start(idle_timeout_s=30)
    try:
        user.wait_for(job_id, {"Running"}, timeout_s=60)
        wait_until(lambda: len(_payload_tree(process)) >= 2, 10, "the payload's two sleeps")
        payload = _payload_tree(process)
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: "taking no new jobs" in pilot.log(), 10, "the drain to start")
        process.send_signal(signal.SIGINT)
        code, stderr = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == EXIT_SIGNAL, stderr
    info = user.status(job_id)
    assert info["status"] == "Killed"
    assert info["minor_status"] == "Killed: pilot received SIGINT"
    _, alive = psutil.wait_procs(payload, timeout=5)
    assert alive == [], f"payload processes survived: {alive}"
    user.run("get-output", str(job_id), "--dir", "out")  # what the payload wrote comes back


def test_drain_grace_expiry_kills_the_payload(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit(TREE_JDL)
    process = pilot.start(idle_timeout_s=30, extra=["--drain-grace-s", "1"])
    try:
        user.wait_for(job_id, {"Running"}, timeout_s=60)
        wait_until(lambda: len(_payload_tree(process)) >= 2, 10, "the payload's two sleeps")
        payload = _payload_tree(process)
        process.send_signal(signal.SIGTERM)
        code, stderr = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == EXIT_SIGNAL, stderr
    assert "drain grace of 1 s expired: killing 1 running job(s)" in stderr
    info = user.status(job_id)
    assert info["status"] == "Killed", user.run("logging-info", str(job_id)).stdout + stderr
    assert "drain grace expired after received SIGTERM" in info["minor_status"]
    _, alive = psutil.wait_procs(payload, timeout=5)
    assert alive == []


@pytest.mark.slow
def test_sigusr1_dumps_state_and_the_pilot_goes_on(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit('Executable = "/bin/sleep"; Arguments = "6";')
    process = pilot.start(idle_timeout_s=1, extra=["--cores", "2"])
    try:
        user.wait_for(job_id, {"Running"}, timeout_s=60)
        process.send_signal(signal.SIGUSR1)
        wait_until(lambda: f"state: job {job_id} running" in pilot.log(), 5, "the state dump")
        code, stderr = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, stderr
    assert "1/2 cores" in pilot.log()
    assert user.status(job_id)["status"] == "Done"
