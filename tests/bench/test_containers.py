"""``bench/containers.py --smoke``: every way of starting a short payload ran it, and the
table's figures are consistent (figures are in docs/benchmarks.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.bench.smoke import require_command, run_smoke

WAYS = {"fork+exec", "plain runtime", "plain job", "bwrap raw", "bwrap runtime", "bwrap job"}


def test_containers_smoke(tmp_path: Path) -> None:
    require_command("bwrap")
    stdout, result = run_smoke("containers.py", tmp_path / "containers.json", timeout_s=120)
    assert result["rounds"] == 3
    if shutil.which("apptainer") is None:
        assert result["apptainer"] == "not present"
        assert "apptainer: not present" in stdout
    rows = {(row["way"], row["payload"]): row for row in result["rows"]}
    assert {way for way, _ in rows} >= WAYS
    assert {payload for _, payload in rows} == {"true", "echo"}
    for (way, payload), row in rows.items():
        assert 0 < row["median_ms"] <= row["p90_ms"], (way, payload)
        assert row["ratio_to_fork_exec"] > 0
    # bubblewrap costs more than a bare fork+exec: namespaces and mounts are real work.
    assert rows[("bwrap raw", "true")]["median_ms"] > rows[("fork+exec", "true")]["median_ms"]
