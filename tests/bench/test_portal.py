"""``bench/portal.py --smoke``: the Job Monitor and search/summary answer at small sizes, and
the report carries every figure docs/benchmarks.md quotes; a seeded data dir kept by one
run is measured again by the next (``--keep-seeded``, ``--seeded``)."""

from __future__ import annotations

from pathlib import Path

from bench import portal
from tests.bench.smoke import run_smoke


def test_portal_smoke(tmp_path: Path) -> None:
    kept = tmp_path / "seeded"
    stdout, result = run_smoke(
        "portal.py", tmp_path / "portal.json", "--no-browser", "--repeat", "5",
        "--keep-seeded", str(kept), timeout_s=300,
    )  # fmt: skip
    assert "goals: first page load" in stdout
    assert [size["jobs"] for size in result["sizes"]] == [2_000, 20_000]
    for size in result["sizes"]:
        requests = size["requests"]
        assert "GET /health (floor)" in requests
        assert {"GET /web/jobs (user)", "GET /web/jobs (admin)"} <= set(requests)
        assert len(size["in_process"]) == 2 * len(portal.QUERIES)  # as a user and an admin
        assert sum("JobName like" in name for name in portal.QUERIES) == 3
        assert sum(name.startswith("monitor: name contains") for name in portal.QUERIES) == 2
        for figures in [*requests.values(), *size["in_process"].values()]:
            assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]

    _stdout, again = run_smoke(
        "portal.py", tmp_path / "again.json", "--no-browser", "--repeat", "2",
        "--seeded", str(kept), timeout_s=300,
    )  # fmt: skip
    [size] = again["sizes"]
    assert size["jobs"] == 20_000  # the last size of the first run, not seeded again
    assert len(size["in_process"]) == 2 * len(portal.QUERIES)
