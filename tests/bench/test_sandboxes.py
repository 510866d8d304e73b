"""``bench/sandboxes.py --smoke``: the sandbox benchmark moves every byte every way and
reports sane ratios and bounded memory (figures are in docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.smoke import require_command, run_smoke

MIB = 1024**2


@pytest.mark.slow
def test_sandboxes_smoke(tmp_path: Path) -> None:
    require_command("curl")
    stdout, result = run_smoke(
        "sandboxes.py", tmp_path / "sandboxes.json", "--dir", str(tmp_path), timeout_s=120
    )
    assert "goal: >= 0.5 of curl" in stdout
    (size,) = result["sizes"]
    assert size["size_mb"] == 16
    # The wrapper stored the incompressible data: the archive is the data plus framing.
    assert 16 * MIB < size["archive_bytes"] < 16.2 * MIB
    for name in ("upload_vs_curl", "upload_vs_uvicorn_floor", "download_vs_curl"):
        assert size[name] > 0
    for name in ("upload_cpu_vs_curl", "download_cpu_vs_curl"):
        assert size[name] > 0
    assert size["median_mb_per_s"].keys() == size["cpu_s_per_gb"].keys()
    assert all(rate > 0 for rate in size["median_mb_per_s"].values())
    assert all(cpu_s > 0 for cpu_s in size["cpu_s_per_gb"].values())
    for process in ("wrapper", "downloader", "coordinator"):
        assert 0 < size[f"{process}_peak_rss_bytes"] < 150 * MIB
    # Nothing left behind by the bench in its work dir.
    assert [p.name for p in tmp_path.iterdir()] == ["sandboxes.json"]
