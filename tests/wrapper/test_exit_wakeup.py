"""A payload's end is seen when it happens, not at the next poll of the supervision loop."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from wrapper.plain import PlainRuntime
from wrapper.runtime import POLL_INTERVAL_S, RunSpec


def test_wait_returns_as_soon_as_a_short_payload_ends(tmp_path: Path) -> None:
    spec = RunSpec(
        argv=["/bin/sleep", "0.01"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
    )
    waited_s = []
    for _ in range(5):
        started_s = time.monotonic()
        payload = PlainRuntime().start(spec)
        # One wait call covers several poll intervals: only a wake-up on exit ends it early.
        assert payload.wait(timeout_s=10 * POLL_INTERVAL_S) == 0
        waited_s.append(time.monotonic() - started_s)
        assert payload.finish(grace_s=0.5).exit_code == 0
    # Polling alone would see a 10 ms payload end at the first poll after it, 50 ms in.
    assert statistics.median(waited_s) < 0.035, waited_s
