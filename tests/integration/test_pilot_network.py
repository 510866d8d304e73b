"""A pilot against a coordinator that goes away, refuses it, or never was there."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol import Role
from tests.conftest import RunningCoordinator, launch_coordinator
from tests.integration.conftest import Pilot, User

EXIT_CONFIG = 2
EXIT_UNREACHABLE = 11
EXIT_OUTDATED = 12
EXIT_SIGNAL = 14
EXIT_REJECTED = 15
DOWN_S = 3.0


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[list[RunningCoordinator]]:
    """Coordinators started by the test on one data dir; all stopped at the end."""
    started: list[RunningCoordinator] = []
    yield started
    for running in started:
        if running.process.poll() is None:
            _stop(running.process)
        assert "Traceback" not in running.log(), running.log()


def _restart(old: RunningCoordinator) -> RunningCoordinator:
    port = int(old.url.rsplit(":", 1)[1])
    return launch_coordinator(old.data_dir, port=port, match_retry_after_s=0.5)


def _actors(coordinator: RunningCoordinator, root: Path) -> tuple[User, Pilot]:
    home, pilot_root = root / "alice", root / "pilot"
    home.mkdir()
    pilot_root.mkdir()
    user = User(coordinator.url, coordinator.token(role="user", subject="alice"), home)
    token = coordinator.token(role=Role.PILOT.value, subject="factory")
    return user, Pilot(coordinator.url, token, pilot_root)


@pytest.mark.slow
def test_job_ends_done_with_its_output_through_a_coordinator_restart(
    tmp_path: Path, restartable: list[RunningCoordinator]
) -> None:
    first = launch_coordinator(tmp_path / "data", match_retry_after_s=0.5)
    restartable.append(first)
    user, pilot = _actors(first, tmp_path)
    (job_id,) = user.submit(
        """Executable = "/bin/sh"; Arguments = "-c 'sleep 2; echo survived > result.txt'";
        StdOutput = "StdOut"; OutputSandbox = {"StdOut", "result.txt"};"""
    )
    process = pilot.start(idle_timeout_s=2)
    try:
        user.wait_for(job_id, {"Running"}, timeout_s=60)
        _stop(first.process)
        time.sleep(DOWN_S)  # the payload ends while nobody listens
        restartable.append(_restart(first))
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "retrying in" in stderr
    assert user.status(job_id)["status"] == "Done"
    user.run("get-output", str(job_id), "--dir", "out")
    assert (user.cwd / "out" / str(job_id) / "result.txt").read_text() == "survived\n"


@pytest.mark.slow
def test_final_report_kept_in_the_spool_is_delivered_after_restart(
    tmp_path: Path, restartable: list[RunningCoordinator]
) -> None:
    first = launch_coordinator(tmp_path / "data", match_retry_after_s=0.5)
    restartable.append(first)
    user, pilot = _actors(first, tmp_path)
    # The payload ends when the test says so, not after a time the test must race: it is
    # caught Running however loaded the machine is, and ends while nobody listens.
    gate = tmp_path / "end-now"
    (job_id,) = user.submit(
        f"""Executable = "/bin/sh";
        Arguments = "-c 'while [ ! -e {gate} ]; do sleep 0.05; done'";"""
    )
    spool_env = {"GRIDPILOT_REPORT_RETRY_S": "0.5", "GRIDPILOT_SPOOL_RETRY_INTERVAL_S": "0.5"}
    process = pilot.start(idle_timeout_s=2, env=spool_env)
    spooled = pilot.workdir / "spool" / f"job_{job_id}.json"
    try:
        user.wait_for(job_id, {"Running"}, timeout_s=60)
        _stop(first.process)
        gate.touch()
        deadline = time.monotonic() + 60
        while not spooled.exists():
            assert time.monotonic() < deadline, "the final report was never kept"
            time.sleep(0.1)
        restartable.append(_restart(first))
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert f"job {job_id}: kept final status delivered" in stderr
    assert not spooled.exists()
    assert user.status(job_id)["status"] == "Done"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def test_unreachable_coordinator_exits_11_after_max_retry(tmp_path: Path) -> None:
    pilot = Pilot(f"http://127.0.0.1:{_closed_port()}", "not-needed", tmp_path)
    started = time.monotonic()
    finished = pilot.run(env={"GRIDPILOT_MAX_RETRY_S": "2"})
    assert finished.returncode == EXIT_UNREACHABLE, finished.stderr
    assert "coordinator unreachable" in finished.stderr
    assert time.monotonic() - started < 30


def test_sigterm_while_the_coordinator_is_unreachable_exits_14_at_once(tmp_path: Path) -> None:
    pilot = Pilot(f"http://127.0.0.1:{_closed_port()}", "not-needed", tmp_path)
    process = pilot.start()  # default max_retry_s: it would keep trying for 300 s
    try:
        deadline = time.monotonic() + 30
        log = pilot.workdir / "pilot.log"
        while not log.exists() or "retrying in" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the pilot never tried the coordinator"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == EXIT_SIGNAL, stderr
    assert time.monotonic() - sent < 5
    assert "stopped by a signal before the coordinator could be reached" in stderr


def test_outdated_pilot_exits_12(
    monkeypatch: pytest.MonkeyPatch,
    start_coordinator: Callable[..., RunningCoordinator],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("GRIDPILOT_MIN_PROTOCOL_VERSION", "99")
    coordinator = start_coordinator()
    monkeypatch.delenv("GRIDPILOT_MIN_PROTOCOL_VERSION")
    pilot = Pilot(coordinator.url, coordinator.token(role="pilot", subject="f"), tmp_path)
    finished = pilot.run()
    assert finished.returncode == EXIT_OUTDATED, finished.stderr
    assert "pilot too old" in finished.stderr


@pytest.mark.parametrize("role", ["user", "bad-signature"])
def test_refused_token_exits_15(role: str, coordinator: RunningCoordinator, tmp_path: Path) -> None:
    token = coordinator.token(role="user") if role == "user" else "e30.e30.c2ln"
    finished = Pilot(coordinator.url, token, tmp_path).run()
    assert finished.returncode == EXIT_REJECTED, finished.stderr
    assert "coordinator refused the pilot" in finished.stderr


def test_missing_url_exits_2(tmp_path: Path) -> None:
    pilot = Pilot("", "token", tmp_path)
    command = [arg for arg in pilot.command() if arg not in ("--url", "")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert finished.returncode == EXIT_CONFIG, finished.stderr
    assert "missing url" in finished.stderr


NETRC_FOR_THE_COORDINATOR = "machine 127.0.0.1 login site-data password not-a-gridpilot-token\n"
"""What a site's worker node may hold for its HTTP proxy or data server on the same host."""


def _netrc_home(root: Path) -> Path:
    home = root / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(NETRC_FOR_THE_COORDINATOR)
    netrc.chmod(0o600)
    return home


def test_a_netrc_entry_for_the_coordinators_host_does_not_replace_the_tokens(
    user: User, pilot: Pilot, tmp_path: Path
) -> None:
    """requests sends ~/.netrc's credentials for a host to every request made without an
    ``auth``, over an Authorization header set by hand: the pilot's and the user's bearer
    tokens must win, for every call (register, match, reports, the output upload, the
    user's submit and get-output)."""
    home = _netrc_home(tmp_path)
    user.env = {**user.env, "NETRC": str(home / ".netrc")}
    (job_id,) = user.submit(
        """Executable = "/bin/sh"; Arguments = "-c 'echo staged > result.txt'";
        OutputSandbox = {"result.txt"};"""
    )
    finished = pilot.run(env={"HOME": str(home)})
    assert finished.returncode == 0, finished.stderr
    assert user.status(job_id)["status"] == "Done"
    user.run("get-output", str(job_id), "--dir", "out")
    assert (user.cwd / "out" / str(job_id) / "result.txt").read_text() == "staged\n"
