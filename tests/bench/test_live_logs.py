"""``bench/live_logs.py --smoke``: the live-logs benchmark ships every byte and sees every
ticker line (figures are in docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.smoke import run_smoke

MIB = 1024**2


@pytest.mark.slow
def test_live_logs_smoke(tmp_path: Path) -> None:
    stdout, result = run_smoke("live_logs.py", tmp_path / "live_logs.json", timeout_s=120)
    assert "goal" in stdout
    # Every byte the payload wrote reached the coordinator: none lost, none twice.
    assert result["shipped_bytes"] == result["written_bytes"] > result["size_mb"] * MIB * 0.99
    assert result["wall_time_ratio"] > 0
    # Every ticker line printed by the follow command exactly once, each soon enough.
    latency = result["latency"]
    assert latency["steady"]["lines"] == round(result["ticker_s"] / 0.05)
    assert latency["sporadic"]["lines"] == result["sporadic_lines"]
    for figures in latency.values():
        assert 0 < figures["p50_s"] <= figures["p95_s"] <= figures["max_s"] < 10
