"""``bench/unpack.py --smoke``: every way unpacked both archives, the bomb was refused by
default and written whole without the ratio limit (figures are in docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from tests.bench.smoke import require_command, run_smoke

MIB = 1024**2


def test_unpack_smoke(tmp_path: Path) -> None:
    require_command("tar")
    require_command("/usr/bin/time")
    stdout, result = run_smoke("unpack.py", tmp_path / "unpack.json", timeout_s=300)
    rows = {(row["case"], row["way"]): row for row in result["rows"]}
    ways = {"tar -xzf", "gridpilot", "gridpilot, no ratio limit", "tarfile r|*"}
    assert {way for _, way in rows} == ways
    for (case, way), row in rows.items():
        assert row["wall_s"] > 0 and row["peak_bytes"] > 0, (case, way)
    assert rows[("2,000 small files", "gridpilot")]["outcome"] == "ok"
    assert rows[("32 MiB of zeros", "gridpilot, no ratio limit")]["outcome"] == "ok"
    # The old way held the bomb in memory; ours stays near a bare interpreter's footprint.
    ours = rows[("32 MiB of zeros", "gridpilot, no ratio limit")]["peak_bytes"]
    assert ours < 48 * MIB
    assert "x tar" in stdout
