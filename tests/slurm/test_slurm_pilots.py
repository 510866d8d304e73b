"""Pilots started by a real Slurm with packaging/slurm/submit-pilots.sh run a coordinator's jobs.

The test Slurm (tests/slurm/start-slurm.sh) is one node on this machine; its jobs reach the
coordinator on 127.0.0.1. The Slurm daemons are left running after the session (starting them
takes seconds; a CI machine is thrown away): ``bash tests/slurm/stop-slurm.sh`` stops them.
The pilots run as a site runs them: the single-file pilot built from this checkout, started by
packaging/pilot-launcher.sh; one test uses the ``GRIDPILOT_PILOT_CMD`` override instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, RunningCoordinator
from tests.slurm.cluster import finished_jobs, wait_until_finished

SUBMIT_PILOTS = REPO_ROOT / "packaging" / "slurm" / "submit-pilots.sh"
JOBS = 6
SLURM_TIME_LIMIT_MIN = 10
PILOT_MEMORY_MB = 700

pytestmark = pytest.mark.slow


@pytest.fixture
def pyz(pilot_pyz: Path) -> Path:
    """The single-file pilot and its ``.sha256``, built from this checkout."""
    return pilot_pyz


def gridpilot(coordinator: RunningCoordinator, token: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "client", *args, "--url", coordinator.url, "--token", token],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"gridpilot {args} exited {result.returncode}: {result.stderr}"
    return result.stdout


def submit_pilots(env: dict[str, str], tmp_path: Path, url: str, token: str, *options: str) -> str:
    """Run submit-pilots.sh; the Slurm job array's id."""
    token_file = tmp_path / f"pilot-{len(list(tmp_path.glob('pilot-*.token')))}.token"
    token_file.write_text(token)
    command = [
        "bash", str(SUBMIT_PILOTS),
        "--url", url,
        "--token-file", str(token_file),
        "--log-dir", str(tmp_path),
        "--pilot-arg=--idle-timeout-s=4",
        "--pilot-arg=--poll-interval-s=0.5",
        *options,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.isdigit(), result.stdout
    return job_id


def slurm_outputs(tmp_path: Path, job_name: str) -> str:
    return "\n".join(path.read_text() for path in sorted(tmp_path.glob(f"{job_name}-*.out")))


def test_slurm_pilots_run_jobs_with_the_allocations_cores_memory_and_time(
    slurm_env: dict[str, str], pyz: Path, start_coordinator: Any, tmp_path: Path
) -> None:
    coordinator: RunningCoordinator = start_coordinator(
        heartbeat_interval_s=1, match_retry_after_s=0.5
    )
    user = coordinator.token("user", subject="alice", vo="slurmvo")
    jdl = tmp_path / "bulk.jdl"
    jdl.write_text(
        'Executable = "/bin/sh";\n'
        "Arguments = \"-c 'sleep 1; echo slurm job %n'\";\n"
        f"Parameters = {JOBS};\n"
        'StdOutput = "StdOut";\nOutputSandbox = {"StdOut"};\n'
    )
    submitted = gridpilot(coordinator, user, "submit", "--json", str(jdl))
    job_ids = [json.loads(line)["job_id"] for line in submitted.splitlines()]
    assert len(job_ids) == JOBS

    job_name = f"gp-test-{uuid.uuid4().hex[:12]}"
    array_id = submit_pilots(
        slurm_env, tmp_path, coordinator.url, coordinator.token("pilot", "factory", "slurmvo"),
        "-n", "2", "--job-name", job_name, "--pyz", str(pyz), "--",
        "--cpus-per-task=1", f"--mem={PILOT_MEMORY_MB}", f"--time={SLURM_TIME_LIMIT_MIN}",
    )  # fmt: skip
    wait_until_finished(slurm_env, array_id, timeout_s=180)

    records = finished_jobs(job_name)
    outputs = slurm_outputs(tmp_path, job_name)
    assert [(r["JobState"], r["ExitCode"]) for r in records] == [("COMPLETED", "0:0")] * 2, outputs
    statuses = json.loads(gridpilot(coordinator, user, "status", "--json", *map(str, job_ids)))
    assert {s["status"] for s in statuses} == {"Done"}, statuses
    out_dir = tmp_path / "out"
    for index, job_id in enumerate(job_ids):
        gridpilot(coordinator, user, "get-output", "--dir", str(out_dir), str(job_id))
        assert (out_dir / str(job_id) / "StdOut").read_text() == f"slurm job {index}\n"

    admin = coordinator.token("admin", subject="root", vo="slurmvo")
    pilots = json.loads(gridpilot(coordinator, admin, "pilots", "--json"))["pilots"]
    assert sorted(p["batch_job_id"] for p in pilots) == sorted(r["JobId"] for r in records)
    for pilot in pilots:
        assert pilot["batch_system"] == "slurm"
        assert pilot["cores"] == 1, "cores come from the allocation, not the node"
        assert pilot["memory_mb"] == PILOT_MEMORY_MB
        assert 0 < pilot["time_left_s"] <= SLURM_TIME_LIMIT_MIN * 60
    assert sorted(j for p in pilots for j in p["job_ids"]) == job_ids


def test_slurm_sees_the_pilots_and_the_launchers_exit_codes(
    slurm_env: dict[str, str], pyz: Path, start_coordinator: Any, tmp_path: Path
) -> None:
    coordinator: RunningCoordinator = start_coordinator()
    refused, tampered = (f"gp-test-{uuid.uuid4().hex[:12]}" for _ in range(2))
    env = {**slurm_env, "GRIDPILOT_PILOT_CMD": f"{sys.executable} -m pilot"}
    arrays = [
        submit_pilots(
            env, tmp_path, coordinator.url, "not-a-token", "--job-name", refused, "--", "--time=5"
        ),
        submit_pilots(
            slurm_env, tmp_path, coordinator.url, coordinator.token("pilot", "factory", "vo1"),
            "--job-name", tampered, "--pyz", str(pyz), "--pyz-sha256", "0" * 64, "--", "--time=5",
        ),
    ]  # fmt: skip
    for array_id in arrays:
        wait_until_finished(slurm_env, array_id, timeout_s=120)

    # 15: the coordinator refused the pilot (docs/pilot.md); Slurm shows the code as is.
    assert [(r["JobState"], r["ExitCode"]) for r in finished_jobs(refused)] == [
        ("FAILED", "15:0")
    ], slurm_outputs(tmp_path, refused)
    # 22: the launcher refused a pyz whose checksum does not match (docs/deployment.md).
    assert [(r["JobState"], r["ExitCode"]) for r in finished_jobs(tampered)] == [
        ("FAILED", "22:0")
    ], slurm_outputs(tmp_path, tampered)
    assert "checksum mismatch" in slurm_outputs(tmp_path, tampered)
