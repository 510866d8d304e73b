"""Unpacking input sandboxes: time, peak memory and the pause other threads see.

    .venv/bin/python -m bench.unpack            # 20,000 small files, a 256 MiB bomb
    .venv/bin/python -m bench.unpack --smoke    # 2,000 files, a 32 MiB bomb (CI)

Each archive is unpacked in a fresh child process (so its peak memory, VmHWM, is its own),
side by side with the alternatives on the same machine in the same run:

- ``tar -xzf``: GNU tar, the physical baseline;
- ``gridpilot``: ``wrapper.sandbox.unpack`` with the default limits (a bomb is refused);
- ``gridpilot, no ratio limit``: the same, writing a bomb whole (memory stays bounded);
- ``tarfile r|*``: tarfile decompressing its own stream (``r|*``, 1 MiB buffer, members
  read 1 MiB at a time): how ``unpack`` read archives before issue 12 (quadratic in the
  archive: minutes for 20,000 small files on a loaded 2-core node).

While gridpilot unpacks, a second thread in the same process sleeps 5 ms at a time and
records the longest gap between its wake-ups: the pause a pilot's heartbeat thread would
see. Prints a table and writes ``bench/results/unpack.json``.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, arguments, child_env, write_result

MIB = 1024**2
OLD_WAY_MAX_FILES = 20_000

CHILD = """
import json, os, sys, tarfile, threading, time
from pathlib import Path
from wrapper.sandbox import SandboxLimits, unpack
way, archive, dest = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
longest = [0.0]
done = threading.Event()
def tick():
    last = time.monotonic()
    while not done.wait(0.005):
        now = time.monotonic()
        longest[0] = max(longest[0], now - last - 0.005)
        last = now
ticker = threading.Thread(target=tick, daemon=True)
ticker.start()
started = time.monotonic()
outcome = "ok"
try:
    if way == "tarfile":  # what unpack did before issue 12, minus its safety checks
        dest.mkdir()
        with tarfile.open(archive, mode="r|*", bufsize=1024 * 1024) as tar:
            for member in tar:
                path = dest / member.name
                if member.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with source, open(path, "wb") as out:
                    for chunk in iter(lambda: source.read(1024 * 1024), b""):
                        out.write(chunk)
    else:
        limits = SandboxLimits(max_ratio=0) if way == "noratio" else SandboxLimits()
        unpack(archive, dest, limits=limits)
except Exception as exc:
    outcome = "refused: " + str(exc)[:80]
wall = time.monotonic() - started
done.set()
status = Path("/proc/self/status").read_text()
peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) * 1024
print(json.dumps({"wall_s": wall, "peak_bytes": peak, "outcome": outcome,
                  "longest_pause_s": longest[0]}))
"""


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def small_files(path: Path, count: int) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for index in range(count):
            data = f"file {index}\n".encode()
            info = tarfile.TarInfo(f"d{index % 100}/f{index}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def zero_bomb(path: Path, size: int) -> Path:
    info = tarfile.TarInfo("zeros")
    info.size = size
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(info, io.BufferedReader(Zeros(size)))
    return path


def run_tar(archive: Path, dest: Path) -> dict[str, Any]:
    dest.mkdir()
    command = ["/usr/bin/time", "-f", "%M", "tar", "-xzf", str(archive), "-C", str(dest)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    wall = time.monotonic() - started
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return {"wall_s": wall, "peak_bytes": peak_kb * 1024, "outcome": "ok"}


def run_python(way: str, archive: Path, dest: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, way, str(archive), str(dest)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=True,
        cwd=REPO,
        env=child_env(),
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(work: Path, files: int, bomb_bytes: int) -> list[dict[str, Any]]:
    cases = {
        f"{files:,} small files": small_files(work / "many.tar.gz", files),
        f"{bomb_bytes // MIB} MiB of zeros": zero_bomb(work / "bomb.tar.gz", bomb_bytes),
    }
    rows: list[dict[str, Any]] = []
    for case, archive in cases.items():
        ways = ["tar -xzf", "gridpilot", "gridpilot, no ratio limit", "tarfile r|*"]
        for way in ways:
            if way == "tarfile r|*" and case.endswith("small files") and files > OLD_WAY_MAX_FILES:
                continue
            dest = work / f"out-{len(rows)}"
            if way == "tar -xzf":
                result = run_tar(archive, dest)
            else:
                kind = {"gridpilot": "ours", "gridpilot, no ratio limit": "noratio"}.get(way)
                result = run_python(kind or "tarfile", archive, dest)
            shutil.rmtree(dest, ignore_errors=True)
            rows.append(
                {"case": case, "way": way, "archive_bytes": archive.stat().st_size, **result}
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'case':<22} {'way':<26} {'wall s':>8} {'x tar':>6} {'peak MB':>8} "
        f"{'pause ms':>9}  outcome"
    ]
    tar_wall = {row["case"]: row["wall_s"] for row in rows if row["way"] == "tar -xzf"}
    for row in rows:
        pause = row.get("longest_pause_s")
        lines.append(
            f"{row['case']:<22} {row['way']:<26} {row['wall_s']:>8.2f} "
            f"{row['wall_s'] / tar_wall[row['case']]:>6.1f} {row['peak_bytes'] / MIB:>8.0f} "
            f"{'' if pause is None else f'{pause * 1000:.0f}':>9}  {row['outcome']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = arguments(__doc__.split("\n")[0], "2,000 files and a 32 MiB bomb, for CI", "unpack")
    args = parser.parse_args()
    files, bomb_bytes = (2_000, 32 * MIB) if args.smoke else (20_000, 256 * MIB)
    with tempfile.TemporaryDirectory(prefix="gridpilot-unpack-bench-") as tmp:
        rows = measure(Path(tmp), files, bomb_bytes)
    result = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    write_result(args.output, result)
    print(table(rows))


if __name__ == "__main__":
    main()
