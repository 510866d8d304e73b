"""Wire compatibility with the previous release, both ways, with real processes.

The previous release is commit ``PREVIOUS`` of this repository (the benchmarks' release
before the hot-path work), taken out of the git history with ``git archive``: its
single-file pilot, built by its own ``packaging/build-pyz.sh``, runs jobs against this
coordinator; this checkout's pilot runs jobs against its coordinator. Every change to the
wire since is additive (new fields with defaults, features a pilot uses only when the
coordinator lists them), and these tests are what holds that promise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from coordinator.logic.auth import load_or_create_signing_key
from tests.conftest import REPO_ROOT, RunningCoordinator, _stop, launch_coordinator
from tests.coordinator.pilot_calls import User
from tests.services.ports import free_port

PREVIOUS = "7c64aa1"
"""The release before the hot path (issue 14): its pilot and its coordinator."""
ECHO = {"Executable": "/bin/sh", "Arguments": "-c 'echo out; sleep 1.5'"}


@pytest.fixture(scope="module")
def previous_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's files, from this repository's history."""
    tree = tmp_path_factory.mktemp("previous-release")
    archive = tree / "release.tar"
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", "-o", str(archive), PREVIOUS],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(tree / "src", filter="data")
    return tree / "src"


@pytest.fixture(scope="module")
def previous_pyz(previous_tree: Path) -> Path:
    """The previous release's single-file pilot, built as that release built it."""
    output = previous_tree.parent / "pyz" / "gridpilot-pilot.pyz"
    subprocess.run(
        ["bash", str(previous_tree / "packaging/build-pyz.sh"), str(output)],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "GRIDPILOT_BUILD_PYTHON": sys.executable},
    )
    return output


@pytest.fixture
def previous_coordinator(previous_tree: Path, tmp_path: Path) -> Iterator[RunningCoordinator]:
    """The previous release's coordinator: its own packages first on the path."""
    data_dir = tmp_path / "previous-coordinator"
    data_dir.mkdir()
    key = load_or_create_signing_key(data_dir)
    port = free_port()
    log_path = data_dir / "server.log"
    command = [sys.executable, "-m", "coordinator", "serve", "--data-dir", str(data_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--heartbeat-interval-s", "1"]
    env = {**os.environ, "PYTHONPATH": str(previous_tree)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=previous_tree, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                break
        except (requests.ConnectionError, requests.Timeout):  # a slow first answer under load
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            _stop(process)
            raise AssertionError(f"the previous coordinator did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    yield RunningCoordinator(url, data_dir, process, key, log_path)
    _stop(process)
    assert "Traceback" not in log_path.read_text()


def run_pilot(command: list[str], coord: RunningCoordinator, workdir: Path) -> None:
    token_file = workdir.parent / "pilot.token"
    token_file.write_text(coord.token(role="pilot", subject="factory", vo="vo1"))
    command += [
        "pilot", "--url", coord.url, "--token-file", str(token_file), "--workdir", str(workdir),
        "--idle-timeout-s", "3", "--poll-interval-s", "0.5", "--cores", "2",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=workdir.parent)
    assert done.returncode == 0, done.stderr[-3000:]


def check_jobs_ran(user: User, job_ids: list[int]) -> None:
    for job_id in job_ids:
        info = user.job(job_id)
        assert (info["status"], info["exit_code"]) == ("Done", 0), info
        statuses = [status for status, _minor, _source in user.history(job_id)]
        assert statuses[-3:] == ["Matched", "Running", "Done"], statuses
        assert user.get(f"/jobs/{job_id}/logs/stdout").content == b"out\n"


@pytest.mark.slow
def test_the_previous_single_file_pilot_runs_jobs_here(previous_pyz: Path, tmp_path: Path) -> None:
    coord = launch_coordinator(tmp_path / "coordinator", heartbeat_interval_s=1)
    try:
        user = User(coord, "vo1")
        job_ids = [user.submit(ECHO)[0] for _ in range(3)]
        workdir = tmp_path / "work"
        workdir.mkdir()
        run_pilot([sys.executable, "-I", "-S", str(previous_pyz)], coord, workdir)
        check_jobs_ran(user, job_ids)
    finally:
        _stop(coord.process)
    assert "Traceback" not in coord.log()


@pytest.mark.slow
def test_this_pilot_runs_jobs_at_the_previous_coordinator(
    previous_coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    """No features listed at registration: the pilot reports Running itself, before the
    payload starts, as pilots did then."""
    user = User(previous_coordinator, "vo1")
    job_ids = [user.submit(ECHO)[0] for _ in range(3)]
    workdir = tmp_path / "work"
    workdir.mkdir()
    run_pilot([sys.executable, "-m", "pilot"], previous_coordinator, workdir)
    check_jobs_ran(user, job_ids)


def test_this_pilot_here_starts_payloads_without_a_running_report(tmp_path: Path) -> None:
    """With this coordinator (``running_in_heartbeat``) a job costs the pilot one status
    report, its final one: the start rode a heartbeat, or the final report itself."""
    coord = launch_coordinator(tmp_path / "coordinator", heartbeat_interval_s=1)
    try:
        user = User(coord, "vo1")
        job_ids = [user.submit(ECHO)[0] for _ in range(3)]
        job_ids += [user.submit({"Executable": "/bin/true"})[0] for _ in range(3)]
        workdir = tmp_path / "work"
        workdir.mkdir()
        run_pilot([sys.executable, "-m", "pilot"], coord, workdir)
        check_jobs_ran(user, job_ids[:3])
        for job_id in job_ids[3:]:
            statuses = [status for status, _minor, _source in user.history(job_id)]
            assert statuses[-3:] == ["Matched", "Running", "Done"], statuses
        metrics = requests.get(f"{coord.url}/metrics", timeout=30).text
        reports = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('gridpilot_hot_path_requests_total{route="job_status"')
        )
        assert reports == len(job_ids)
    finally:
        _stop(coord.process)
    assert "Traceback" not in coord.log()
