"""``bench/portal.py --smoke``: the Job Monitor and search/summary answer at small sizes, and
the report carries every figure docs/benchmarks.md quotes."""

from __future__ import annotations

from pathlib import Path

from bench import portal
from tests.bench.smoke import run_smoke


def test_portal_smoke(tmp_path: Path) -> None:
    stdout, result = run_smoke(
        "portal.py", tmp_path / "portal.json", "--no-browser", "--repeat", "5", timeout_s=300
    )
    assert "goals: first page load" in stdout
    assert [size["jobs"] for size in result["sizes"]] == [2_000, 20_000]
    for size in result["sizes"]:
        requests = size["requests"]
        assert "GET /health (floor)" in requests
        assert {"GET /web/jobs (user)", "GET /web/jobs (admin)"} <= set(requests)
        assert len(size["in_process"]) == 2 * len(portal.QUERIES)  # as a user and an admin
        assert sum("JobName like" in name for name in portal.QUERIES) == 3
        for figures in [*requests.values(), *size["in_process"].values()]:
            assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
