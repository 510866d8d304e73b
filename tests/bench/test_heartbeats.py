"""``bench/heartbeats.py --smoke``: running jobs seeded below HTTP heartbeat at their
pilots' rate, one request per job and one per pilot, and every heartbeat is accepted
(figures are in docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from tests.bench.smoke import run_smoke


def test_heartbeats_smoke(tmp_path: Path) -> None:
    stdout, result = run_smoke("heartbeats.py", tmp_path / "heartbeats.json")
    assert "goal 200,000" in stdout  # issue 14's goal
    levels = result["levels"]
    assert [level["running_jobs"] for level in levels] == [100, 300]
    for level in levels:
        beats, health = level["heartbeat"], level["health"]
        # A seeded Running job held by its pilot: every heartbeat is accepted (no 409
        # lease_lost, no 401), at about one per job per interval over the run.
        assert beats["errors"] == 0 and health["errors"] == 0
        expected = level["running_jobs"] * result["duration_s"] / result["interval_s"]
        assert 0.7 * expected <= beats["requests"] <= 1.3 * expected
        assert health["requests"] == beats["requests"]
        assert 0 < beats["p50_ms"] <= beats["p99_ms"]
        # Batched: one request per pilot and interval carries all of that pilot's jobs.
        batched = level["batched"]
        assert batched["errors"] == 0
        expected_batches = level["pilots"] * result["duration_s"] / result["interval_s"]
        assert 0.7 * expected_batches <= batched["requests"] <= 1.3 * expected_batches
        assert 0.7 * expected <= batched["jobs_per_s"] * result["duration_s"] <= 1.3 * expected
    assert result["largest_level_under_goal_p99"] in (0, 100, 300)
