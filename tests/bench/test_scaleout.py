"""``bench/scaleout.py --smoke``: SQLite and PostgreSQL with two replicas (one backend each
and several replicas: what the script can do, in a third of the CI time of all four
setups) answer the match and heartbeat loads without errors, none hands out a job twice,
and every replica and the database are measured (figures are in docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from tests.bench.smoke import run_smoke


def test_scaleout_smoke(tmp_path: Path) -> None:
    _stdout, result = run_smoke(
        "scaleout.py",
        tmp_path / "scaleout.json",
        "--setups",
        "sqlite-1,postgresql-2",
        timeout_s=400,
    )
    setups = {setup["setup"]: setup for setup in result["setups"]}
    assert list(setups) == ["sqlite-1", "postgresql-2"]
    for name, setup in setups.items():
        assert setup["duplicates"] == 0
        for kind in ("health", "match", "heartbeat"):
            run = setup[kind]
            assert run["errors"] == 0, (name, kind)
            assert len(run["replica_cpu_ms"]) == setup["replicas"]
            # A replica's share of 300 cheap /health requests can fall under psutil's
            # clock tick; the matches and heartbeats cost every replica measurably.
            measured = run["replica_cpu_ms"] if kind != "health" else [sum(run["replica_cpu_ms"])]
            assert all(cpu > 0 for cpu in measured), (name, kind)
        assert setup["match"]["matches_per_s"] > 0
        # Every match found a job: a drained bench measures empty matches, which cost more.
        assert setup["match"]["empty"] == 0, name
        assert setup["heartbeat"]["running_jobs_carried"] > 0
        assert (setup["match"]["postgres_cpu_ms"] > 0) == (setup["backend"] == "postgresql")
    downloads = result["downloads"]
    for way in ("local", "s3", "s3_direct"):
        assert downloads[way]["mb_per_s"] > 0
    assert downloads["s3"]["coordinator_cpu_s_per_gb"] > 0
