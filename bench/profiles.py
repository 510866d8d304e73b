"""py-spy profiles of the coordinator under a benchmark's load, and their summary.

Every benchmark that starts a coordinator takes ``--profile DIR``: ``py-spy record --gil``
(CPU samples only: the thread holding the GIL) is attached to each coordinator it starts,
writing ``DIR/<name>.raw`` (py-spy's collapsed stacks, readable by flamegraph.pl or
speedscope) and, when the coordinator stops, ``DIR/<name>.txt``: the share of samples in
each package and the heaviest functions, inclusive and self. py-spy is not a dependency of
gridpilot: ``pip install py-spy``.

    python -m bench.profiles FILE.raw     # the summary of a recorded profile
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

SAMPLE_RATE_HZ = 200
PACKAGES = (
    "coordinator/api",
    "coordinator/logic",
    "coordinator/store",
    "protocol/",
    "fastapi",
    "starlette",
    "pydantic",
    "uvicorn",
    "httptools",
    "sqlalchemy",
    "sqlite3",
    "msgspec",
    "anyio",
    "asyncio",
    "logging",
)
"""Packages shown in the summary, by a piece of their source path."""
_LINE = re.compile(r":\d+\)")
_ROOTS = re.compile(
    r"\((<frozen runpy>|typer/|coordinator/cli\.py|coordinator/__main__\.py|uvicorn/server\.py"
    r"|uvicorn/_compat\.py|asyncio/runners\.py|threading\.py)"
    r"|BaseEventLoop\.(run_forever|run_until_complete|_run_once)"
)
"""Frames every sample of a thread passes through (start-up, the loop): left out of the list."""


class Profiler:
    """py-spy attached to one process until ``stop``."""

    def __init__(self, pid: int, raw_path: Path) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        self.raw_path = raw_path
        command = [spy, "record", "--pid", str(pid), "--gil", "--nonblocking"]
        command += ["-r", str(SAMPLE_RATE_HZ), "-f", "raw", "-o", str(raw_path)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        """End the recording (py-spy writes its file on SIGINT) and write the summary."""
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self.raw_path.exists():
            self.raw_path.with_suffix(".txt").write_text(summary(self.raw_path))


def summary(raw_path: Path, top: int = 40) -> str:
    """Packages and functions by share of samples (inclusive: anywhere on the stack)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit() or not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        for package in {p for p in PACKAGES for frame in frames if p in frame}:
            packages[package] += count
    lines = [f"{raw_path.name}: {total} samples at {SAMPLE_RATE_HZ} Hz (GIL held)", ""]
    lines += ["share of samples by package (inclusive):"]
    lines += [f"{100 * n / max(1, total):6.1f}%  {name}" for name, n in packages.most_common()]
    lines += ["", "functions, inclusive:"]
    heaviest = [(f, n) for f, n in inclusive.most_common() if not _ROOTS.search(f)][:top]
    lines += [f"{100 * n / max(1, total):6.1f}%  {f}" for f, n in heaviest]
    lines += ["", "functions, self:"]
    lines += [f"{100 * n / max(1, total):6.1f}%  {f}" for f, n in own.most_common(top // 2)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(summary(Path(sys.argv[1])))
