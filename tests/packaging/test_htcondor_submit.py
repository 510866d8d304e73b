"""``packaging/htcondor/pilot.sub``, read by HTCondor's own Python bindings (``htcondor2``
parses a submit description without any daemon), then run the way an execute node runs
it: its executable with its expanded arguments, in a scratch dir holding its input files
and the job and machine ad files, against a real coordinator."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from protocol import Role
from tests.checks.test_condor_ads import MACHINE_AD, job_ad
from tests.conftest import REPO_ROOT, RunningCoordinator
from tests.integration.conftest import TUTORIAL_JDL, User
from tests.packaging.zipapps import LAUNCHER

SUBMIT_FILE = REPO_ROOT / "packaging" / "htcondor" / "pilot.sub"
PYZ = "gridpilot-pilot.pyz"


def _htcondor() -> Any:
    try:
        import htcondor2
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the htcondor bindings are required in CI (the test extra installs them)")
        pytest.skip("htcondor bindings not installed")
    return htcondor2


@pytest.fixture
def submit() -> Any:
    return _htcondor().Submit(SUBMIT_FILE.read_text())


def test_it_parses_and_names_what_a_pilot_needs(submit: Any) -> None:
    assert submit["universe"] == "vanilla"
    executable = SUBMIT_FILE.parent / submit["executable"]
    assert executable.is_file() and os.access(executable, os.X_OK)
    inputs = [name.strip() for name in submit.expand("transfer_input_files").split(",")]
    assert inputs == [PYZ, f"{PYZ}.sha256", "pilot-launcher.sh", "pilot.token"]
    assert (SUBMIT_FILE.parent.parent / "pilot-launcher.sh").is_file()
    assert submit["should_transfer_files"] == "YES"
    assert int(submit.expand("request_cpus")) >= 1
    assert int(submit.expand("request_memory")) >= 2000  # MB, no unit suffix
    assert int(submit.expand("request_disk")) > 0
    # ``+MaxRuntime`` becomes the job attribute the pilot reads back from its job ad.
    assert int(submit.expand("MY.MaxRuntime")) == 172800
    assert "MaxRuntime" in submit["periodic_remove"]
    assert submit.expand("log").startswith("logs/")


def test_the_queue_statement_takes_the_number_of_pilots(submit: Any) -> None:
    assert submit.getQArgs() == "$(NPILOTS)"
    # What `condor_submit pilot.sub -append 'NPILOTS = 50'` does to the macro.
    submit["NPILOTS"] = "50"
    assert submit.expand("NPILOTS") == "50"


def test_a_broken_description_is_refused_by_the_bindings() -> None:
    """So the tests above would notice pilot.sub turning into something HTCondor rejects."""
    with pytest.raises(ValueError):
        _htcondor().Submit("this is not a submit command\n" + SUBMIT_FILE.read_text())


def pilot_arguments(submit: Any, url: str, idle_timeout_s: int = 3) -> list[str]:
    submit["COORDINATOR_URL"] = url
    submit["IDLE_TIMEOUT_S"] = str(idle_timeout_s)
    # New-style HTCondor arguments: one double-quoted string, split like a shell does.
    return shlex.split(submit.expand("arguments").strip('"'))


@pytest.fixture
def pyz(pilot_pyz: Path) -> Path:
    """The single-file pilot built from this checkout (with its ``.sha256``)."""
    return pilot_pyz


def scratch_dir(tmp_path: Path, submit: Any, token: str, pyz: Path) -> Path:
    """What the starter prepares: the input files, the executable and the two ad files."""
    scratch = tmp_path / "execute" / "dir_4242"
    scratch.mkdir(parents=True)
    shutil.copy(pyz, scratch / PYZ)
    shutil.copy(f"{pyz}.sha256", scratch / f"{PYZ}.sha256")
    shutil.copy(LAUNCHER, scratch / "pilot-launcher.sh")
    (scratch / submit.expand("TOKEN_FILE")).write_text(token)
    shutil.copy(SUBMIT_FILE.parent / submit["executable"], scratch / submit["executable"])
    (scratch / ".job.ad").write_text(job_ad(int(time.time())))
    (scratch / ".machine.ad").write_text(MACHINE_AD)
    return scratch


def worker_node_env(tmp_path: Path, scratch: Path) -> dict[str, str]:
    """What the starter gives the job: the system's python3, nothing of this checkout's venv."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "_CONDOR_SCRATCH_DIR": str(scratch),
        "_CONDOR_JOB_AD": str(scratch / ".job.ad"),
        "_CONDOR_MACHINE_AD": str(scratch / ".machine.ad"),
    }


@pytest.mark.slow
def test_a_pilot_started_as_htcondor_would_runs_a_job_with_the_slot_s_resources(
    submit: Any, start_coordinator: Callable[..., RunningCoordinator], tmp_path: Path, pyz: Path
) -> None:
    coordinator = start_coordinator(heartbeat_interval_s=1, match_retry_after_s=0.5)
    home = tmp_path / "alice"
    home.mkdir()
    user = User(coordinator.url, coordinator.token(role="user", subject="alice", vo="vo1"), home)
    [job_id] = user.submit(TUTORIAL_JDL)
    token = coordinator.token(role=Role.PILOT.value, subject="factory", vo="vo1")
    scratch = scratch_dir(tmp_path, submit, token, pyz)
    done = subprocess.run(
        [str(scratch / submit["executable"]), *pilot_arguments(submit, coordinator.url)],
        cwd=scratch,
        env=worker_node_env(tmp_path, scratch),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert user.status(job_id)["status"] == "Done"
    admin = coordinator.headers(coordinator.token(role="admin", subject="ops", vo="vo1"))
    [pilot] = requests.get(coordinator.api("/pilots"), headers=admin, timeout=10).json()["pilots"]
    assert (pilot["batch_system"], pilot["batch_job_id"]) == ("htcondor", "4242.3")
    assert pilot["cores"] == 1
    assert pilot["memory_mb"] == 2500
    assert 6900 <= pilot["time_left_s"] <= 7000
    assert pilot["job_ids"] == [job_id]
    # Everything the pilot wrote is under the scratch dir's pilot/ (HTCondor cleans it).
    assert (scratch / "pilot" / "pilot.log").is_file()


@pytest.mark.slow
def test_htcondor_s_kill_signal_drains_the_pilot_through_the_launcher(
    submit: Any, start_coordinator: Callable[..., RunningCoordinator], tmp_path: Path, pyz: Path
) -> None:
    coordinator = start_coordinator(match_retry_after_s=0.5)
    token = coordinator.token(role=Role.PILOT.value, subject="factory", vo="vo1")
    scratch = scratch_dir(tmp_path, submit, token, pyz)
    process = subprocess.Popen(
        [str(scratch / submit["executable"]), *pilot_arguments(submit, coordinator.url, 300)],
        cwd=scratch,
        env=worker_node_env(tmp_path, scratch),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    admin = coordinator.headers(coordinator.token(role="admin", subject="ops", vo="vo1"))
    deadline = time.monotonic() + 60
    while not requests.get(coordinator.api("/pilots"), headers=admin, timeout=10).json()["pilots"]:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr
        time.sleep(0.2)
    process.send_signal(getattr(signal, submit["kill_sig"]))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 14, stderr  # the pilot's "stopped by a signal", unchanged
    assert "SIGTERM: taking no new jobs" in stderr
