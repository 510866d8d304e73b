"""The one-node test Slurm: bring it up with ``start-slurm.sh`` and read what it did.

Used by the Slurm tests and by the throughput benchmark's smoke test. Starting needs root
(SlurmUser=root, munged as the munge user). Outside CI a test without root or without Slurm
installed is skipped; with ``CI`` set it fails, so CI can never pass without a real Slurm.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SLURM_DIR = Path(os.environ.get("GRIDPILOT_SLURM_DIR", "/tmp/gridpilot-slurm"))
START_SCRIPT = Path(__file__).with_name("start-slurm.sh")
STOP_SCRIPT = Path(__file__).with_name("stop-slurm.sh")
START_TIMEOUT_S = 120.0
_JOBCOMP_FIELD = re.compile(r"(\w+)=(\S*)")


def unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"Slurm is required in CI: {reason}")
    pytest.skip(reason)


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def slurm_running() -> bool:
    """True when the test Slurm's daemons are up already (started by someone else)."""
    return _alive(SLURM_DIR / "slurmctld.pid") and _alive(SLURM_DIR / "slurmd.pid")


def stop_slurm() -> None:
    subprocess.run(
        ["bash", str(STOP_SCRIPT), str(SLURM_DIR)], capture_output=True, timeout=START_TIMEOUT_S
    )


def ensure_slurm() -> dict[str, str]:
    """Start (or find running) the test Slurm; the environment its commands need."""
    if os.geteuid() != 0:
        unavailable("starting the test Slurm needs root")
    missing = [
        name for name in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(name)
    ]
    if missing:
        unavailable(f"not installed: {', '.join(missing)} (tests/setup-system.sh installs them)")
    result = subprocess.run(
        ["bash", str(START_SCRIPT), str(SLURM_DIR)],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    if result.returncode != 0:
        unavailable(f"start-slurm.sh exited {result.returncode}:\n{result.stderr}")
    return {**os.environ, "SLURM_CONF": str(SLURM_DIR / "slurm.conf")}


def queued_job_ids(env: dict[str, str], job_id: str) -> list[str]:
    """Tasks of ``job_id`` (a job or an array) still pending, running or completing."""
    result = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%i"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    # squeue refuses an id it no longer knows (MinJobAge passed): nothing left queued.
    return result.stdout.split() if result.returncode == 0 else []


def wait_until_finished(env: dict[str, str], job_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while queued_job_ids(env, job_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"Slurm job {job_id} still queued after {timeout_s} s")
        time.sleep(0.5)


def finished_jobs(job_name: str) -> list[dict[str, str]]:
    """The job completion records (JobId, JobState, ExitCode, ...) of finished jobs by name.

    Without accounting, the job completion log is where Slurm keeps a finished job's state and
    exit code once MinJobAge has dropped it from squeue and scontrol.
    """
    log = SLURM_DIR / "jobcomp.log"
    text = log.read_text() if log.exists() else ""
    records = [dict(_JOBCOMP_FIELD.findall(line)) for line in text.splitlines()]
    return [record for record in records if record.get("Name") == job_name]
