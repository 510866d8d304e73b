"""``bench/pilot_startup.py --smoke``: the start-up benchmark runs end to end (figures are in
docs/benchmarks.md; here only that every variant really started a job)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.smoke import run_smoke


@pytest.mark.slow
def test_pilot_startup_smoke(tmp_path: Path) -> None:
    stdout, data = run_smoke("pilot_startup.py", tmp_path / "pilot_startup.json", timeout_s=600)
    assert "job Running p50" in stdout
    assert data["runs"] == 2
    assert 500_000 < data["pyz_bytes"] < 5_000_000
    variants = data["variants"]
    assert set(variants) == {"floor", "installed", "pyz-warm", "pyz-cold"}
    for name in ("installed", "pyz-warm", "pyz-cold"):
        row = variants[name]
        # The pilot checked the node, registered, then its job went Running, in that order.
        assert 0 < row["checks_s_median"] <= row["registered_s_median"] <= row["running_s_median"]
    assert variants["floor"]["running_s_median"] < variants["pyz-warm"]["running_s_median"]
    assert set(data["version"]) == {
        "pyz-warm", "pyz-cold", "pyz-from-zip", "installed", "unpack-only"
    }  # fmt: skip
    assert all(row["version_s_median"] > 0 for row in data["version"].values())
