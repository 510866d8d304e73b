"""Cores, memory, time left and job id from HTCondor's ad files, as ``checks run`` shows them.

The ad files are written the way HTCondor's starter writes ``$_CONDOR_JOB_AD`` and
``$_CONDOR_MACHINE_AD`` (``Key = value``, quoted strings, true/false, expressions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import psutil

MIB = 1024 * 1024
CHECKS_RUN = [sys.executable, "-m", "pilot", "checks", "run", "--format", "json"]


def job_ad(now: int, *, request_memory: str = "3000", max_runtime_s: int = 7200) -> str:
    """A running pilot's job ad; ``request_memory`` may be HTCondor's default expression."""
    started = now - 200
    return f"""\
MyType = "Job"
TargetType = "Machine"
ClusterId = 4242
ProcId = 3
GlobalJobId = "schedd.example.org#4242.3#{now - 600}"
Owner = "pilotfactory"
Cmd = "/home/pilotfactory/gridpilot/pilot-wrapper.sh"
Arguments = "--url https://coordinator.example.org:8443 --token-file pilot.token"
JobUniverse = 5
JobStatus = 2
RequestCpus = 1
RequestMemory = {request_memory}
RequestDisk = 20000000
MaxRuntime = {max_runtime_s}
QDate = {now - 600}
JobStartDate = {started}
JobCurrentStartDate = {started}
EnteredCurrentStatus = {started}
WantCheckpoint = false
Requirements = (TARGET.Arch == "X86_64") && (TARGET.Cpus >= RequestCpus)
PeriodicRemove = (JobStatus == 2) && (time() - EnteredCurrentStatus > MaxRuntime)
TransferInput = "gridpilot-pilot.pyz,gridpilot-pilot.pyz.sha256,pilot-launcher.sh,pilot.token"
"""


MACHINE_AD = """\
MyType = "Machine"
TargetType = "Job"
Name = "slot1_3@wn042.example.org"
Machine = "wn042.example.org"
SlotType = "Dynamic"
Cpus = 1
Memory = 2500
Disk = 19853440
Arch = "X86_64"
OpSys = "LINUX"
HasFileTransfer = true
JobId = "4242.3"
Start = true
"""

DEFAULT_REQUEST_MEMORY = (
    "ifthenelse(MemoryUsage =!= undefined,MemoryUsage,(ImageSize + 1023) / 1024)"
)


def run_checks(
    tmp_path: Path, ads: dict[str, str], extra_env: Optional[dict[str, str]] = None
) -> dict[str, dict[str, Any]]:
    """``checks run --format json`` in an environment holding only these ad files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "_CONDOR_"))}
    env.update(extra_env or {})
    for variable, text in ads.items():
        path = tmp_path / variable.lower().strip("_")
        path.write_text(text)
        env[variable] = str(path)
    done = subprocess.run(
        [*CHECKS_RUN, "--only", "cores", "--only", "memory", "--only", "timeleft"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return {check["name"]: check for check in json.loads(done.stdout)["checks"]}


def test_the_slot_ad_gives_cores_and_memory_the_job_ad_the_time_left(tmp_path: Path) -> None:
    now = int(time.time())
    checks = run_checks(tmp_path, {"_CONDOR_JOB_AD": job_ad(now), "_CONDOR_MACHINE_AD": MACHINE_AD})
    cores, memory, timeleft = checks["cores"], checks["memory"], checks["timeleft"]
    assert cores["facts"]["batch_cores"] == 1
    assert cores["facts"]["cores"] == 1
    assert "batch 1" in cores["message"]
    # The slot's Memory (2500 MiB), not the 3000 MB asked for, nor the node's.
    assert memory["facts"]["batch_memory_mb"] == 2500
    assert memory["facts"]["memory_mb"] == min(2500, psutil.virtual_memory().total // MIB)
    facts = timeleft["facts"]
    assert (facts["batch_system"], facts["batch_job_id"]) == ("htcondor", "4242.3")
    # MaxRuntime 7200 s, started 200 s ago (a few seconds pass while the checks run).
    assert 6990 <= facts["time_left_s"] <= 7000
    assert "htcondor job 4242.3" in timeleft["message"]


def test_without_a_slot_ad_the_job_ad_request_counts(tmp_path: Path) -> None:
    checks = run_checks(tmp_path, {"_CONDOR_JOB_AD": job_ad(int(time.time()))})
    assert checks["cores"]["facts"]["batch_cores"] == 1
    assert checks["memory"]["facts"]["batch_memory_mb"] == 3000


def test_an_expression_is_no_limit(tmp_path: Path) -> None:
    """HTCondor's default RequestMemory is an expression: the node's memory is used."""
    ad = job_ad(int(time.time()), request_memory=DEFAULT_REQUEST_MEMORY)
    checks = run_checks(tmp_path, {"_CONDOR_JOB_AD": ad})
    assert checks["memory"]["facts"]["batch_memory_mb"] is None
    assert checks["memory"]["facts"]["memory_mb"] == psutil.virtual_memory().total // MIB


def test_a_missing_ad_file_leaves_the_node_s_own_figures(tmp_path: Path) -> None:
    """The variable set but its file gone (a starter that failed to write it)."""
    checks = run_checks(tmp_path, {}, {"_CONDOR_MACHINE_AD": str(tmp_path / "gone")})
    assert checks["cores"]["status"] == "ok"
    assert checks["cores"]["facts"]["batch_cores"] is None
    assert checks["memory"]["facts"]["batch_memory_mb"] is None
