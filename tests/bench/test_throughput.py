"""``bench/throughput.py --smoke``: 20 jobs through gridpilot, the local Slurm and bare
fork+exec, all finished, with a consistent table (figures are in docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.smoke import run_smoke

RUNNERS = ("floor_sequential", "floor_parallel_2", "gridpilot", "slurm")


@pytest.mark.slow
def test_throughput_smoke(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    env = slurm_env
    stdout, data = run_smoke("throughput.py", tmp_path / "throughput.json", env=env, timeout_s=600)
    (result,) = data["results"]
    assert result["jobs"] == 20
    for name in RUNNERS:
        row = result[name]
        assert row["jobs"] == 20, name
        assert row["wall_s"] > 0 and row["jobs_per_s"] > 0, name
        assert row["ms_per_job_per_slot"] == pytest.approx(
            row["wall_s"] * row["slots"] / 20 * 1000, rel=0.01
        ), name
    gridpilot, slurm = result["gridpilot"], result["slurm"]
    assert gridpilot["pilot_cpu_ms_per_job"] > 0 and gridpilot["coordinator_cpu_ms_per_job"] > 0
    assert result["gridpilot_vs_slurm"] == pytest.approx(
        gridpilot["jobs_per_s"] / slurm["jobs_per_s"], rel=0.01
    )
    assert "gridpilot/slurm" in stdout
