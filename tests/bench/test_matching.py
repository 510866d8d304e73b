"""``bench/matching.py --smoke``: simulated pilots get jobs over HTTP, none twice, and the
coordinator's database agrees (figures are in docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from tests.bench.smoke import run_smoke


def test_matching_smoke(tmp_path: Path) -> None:
    stdout, result = run_smoke("matching.py", tmp_path / "matching.json")
    assert "goal >= 2000" in stdout
    assert [size["waiting"] for size in result["sizes"]] == [200, 2000]
    for size in result["sizes"]:
        check = size["check"]
        # Never drained: every match request got exactly one job, each job went out once
        # and the database holds exactly those jobs as Matched, once each in their history.
        requests = size["warm_up_matches"] + sum(run["match"]["requests"] for run in size["runs"])
        assert check["handed_out"] == requests
        assert check["duplicates_in_replies"] == 0
        assert check["database_agrees"]
        assert check["matched_in_database"] == check["handed_out"]
        for run in size["runs"]:
            assert run["match"]["errors"] == 0 and run["health"]["errors"] == 0
            assert 0 < run["match"]["p50_ms"] <= run["match"]["p99_ms"]
            assert run["match"]["server_cpu_ms"] > 0 and run["health"]["per_s"] > 0
    assert result["summary"]["no_duplicates"]
    assert result["summary"]["cost_ratio_cpu"] > 0
