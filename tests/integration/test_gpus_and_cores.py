"""GPUs and cores end to end: a real pilot on a node whose ``nvidia-smi`` is a stand-in
describing 4 GPUs of two models (tests/fake_gpus.py) splits them among its jobs, each
payload sees its own; wide jobs do not starve behind narrow ones; ``explain``,
``pilots --why`` and ``status --full`` from the user's side."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RunningCoordinator
from tests.fake_gpus import make_fake_gpu_node
from tests.integration.conftest import Pilot, User
from tests.integration.pilot_probe import first_time, history, pilot_id_from

SHOW_GPUS = (
    'Executable = "/bin/sh"; '
    "Arguments = \"-c 'echo gpus=$CUDA_VISIBLE_DEVICES count=$GRIDPILOT_GPUS; sleep 2'\"; "
)


def gpu_pilot_config(pilot: Pilot, options: dict[str, str]) -> Path:
    settings = "\n".join(f"      {name}: {value}" for name, value in options.items())
    return pilot.write_config(f"checks:\n  options:\n    gpu:\n{settings}\n")


def test_a_gpu_node_splits_its_gpus_and_each_payload_sees_its_own(
    user: User, pilot: Pilot, coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    node = make_fake_gpu_node(tmp_path / "node")
    (a100s,) = user.submit(SHOW_GPUS + 'NumberOfGPUs = 2; MinGPUCapability = "8.0";', "a.jdl")
    (t4,) = user.submit(SHOW_GPUS + 'Tags = {"GPU"}; GPUModel = "T4";', "b.jdl")
    (any_gpu,) = user.submit(SHOW_GPUS + "NumberOfGPUs = 1;", "c.jdl")
    (cpu_only,) = user.submit(SHOW_GPUS, "d.jdl")
    (too_big,) = user.submit(SHOW_GPUS + "GPUMemoryMB = 100000;", "e.jdl")
    config = gpu_pilot_config(pilot, node.options)
    finished = pilot.run(
        idle_timeout_s=3,
        extra=["--cores", "4", "--config", str(config)],
        env={"PATH": node.path_env()},  # the gpu check finds the stand-in nvidia-smi
    )
    assert finished.returncode == 0, finished.stderr
    seen = {}
    for job_id in (a100s, t4, any_gpu, cpu_only):
        assert user.status(job_id)["status"] == "Done"
        seen[job_id] = user.run("logs", str(job_id)).stdout.strip()
    assert seen[a100s] == "gpus=0,1 count=2"
    assert seen[t4] in ("gpus=2 count=1", "gpus=3 count=1")
    assert seen[any_gpu] in ("gpus=2 count=1", "gpus=3 count=1") and seen[any_gpu] != seen[t4]
    assert seen[cpu_only] == "gpus= count=0"
    spans = [(first_time(history(coordinator, j), "Running"), j) for j in (a100s, t4, any_gpu)]
    assert max(start for start, _ in spans) - min(start for start, _ in spans) < 2.0, (
        "the three GPU jobs did not run side by side"
    )
    assert user.status(too_big)["status"] == "Waiting"
    explained = user.run("explain", str(too_big)).stdout
    assert "Reason: none of the 1 pilot(s) seen" in explained
    assert explained.splitlines()[1].endswith("meets: gpus (1 GPU(s), >= 100000 MiB)")
    [gpu_line] = [line for line in explained.splitlines() if line.strip().startswith("gpus ")]
    assert gpu_line.endswith("0/1  excludes all")
    why = user.run("pilots", "--why", pilot_id_from(pilot.log())).stdout
    assert "Cause=no_queue_fits;" in why and "gpus: needs 1 GPU(s), >= 100000 MiB" in why
    full = user.run("status", "--full", str(a100s)).stdout
    assert "GPUs" in full and "CPUEfficiency(%)" in full and "Cores" in full
    user.run("kill", str(too_big))


def wide_and_narrow(user: User, narrow_count: int) -> tuple[list[int], int]:
    narrow = [
        user.submit('Executable = "/bin/sleep"; Arguments = "1.5";', f"n{i}.jdl")[0]
        for i in range(narrow_count)
    ]
    (wide,) = user.submit(
        'Executable = "/bin/sleep"; Arguments = "0.5"; NumberOfProcessors = 2;', "wide.jdl"
    )
    return narrow, wide


@pytest.mark.parametrize("patience_s", [2.0, 0.0])
def test_a_wide_job_is_not_starved_by_narrow_ones(
    user: User, pilot: Pilot, coordinator: RunningCoordinator, patience_s: float
) -> None:
    """A 2-core node, narrow jobs preferred (``smallest_first``): with a patience the wide
    job starts within patience + one narrow run + slack, ahead of most narrow jobs; without
    (patience 0: never hold) it waits until every narrow job has started."""
    narrow, wide = wide_and_narrow(user, 8)
    policy = {
        "GRIDPILOT_SLOT_POLICY": "smallest_first",
        "GRIDPILOT_WIDE_JOB_PATIENCE_S": str(patience_s),
    }
    finished = pilot.run(idle_timeout_s=3, extra=["--cores", "2"], env=policy)
    assert finished.returncode == 0, finished.stderr
    started = first_time(history(coordinator, wide), "Running")
    narrow_starts = [first_time(history(coordinator, job), "Running") for job in narrow]
    after = sum(1 for start in narrow_starts if start > started)
    if patience_s:
        waited_s = started - min(narrow_starts)  # from the pilot's first job
        assert waited_s < patience_s + 1.5 + 2.5, f"the wide job waited {waited_s:.1f} s"
        assert after >= 3, f"only {after} narrow job(s) started after the wide one"
    else:
        assert after == 0, "without holding cores the wide job should have waited for all"


@pytest.mark.skipif(
    shutil.which("nvidia-smi") is None,
    reason="no NVIDIA GPU on this machine (nvidia-smi not on PATH): the real-GPU run "
    "happens only where one exists; the stand-in test above covers the path",
)
def test_a_real_gpu_job_sees_its_gpu(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit(
        'Executable = "/bin/sh"; Arguments = "-c \'echo $CUDA_VISIBLE_DEVICES\'"; NumberOfGPUs = 1;'
    )
    finished = pilot.run(idle_timeout_s=3, extra=["--cores", "1"])
    assert finished.returncode == 0, finished.stderr
    assert user.status(job_id)["status"] == "Done"
    given = user.run("logs", str(job_id)).stdout.strip()
    listed = subprocess.run(
        ["nvidia-smi", "-L"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    assert given.isdigit() and f"GPU {given}:" in listed, (given, listed)
