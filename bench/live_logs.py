"""Live log shipping: does it slow the payload down, and how soon does a line show up?

    .venv/bin/python -m bench.live_logs --size-mb 500

Starts a coordinator on 127.0.0.1 in a temporary directory and runs, as jobs of one real
``gridpilot pilot`` (one slot, so one after the other):

1. a payload writing ``--size-mb`` of 100-byte text lines to stdout, one write per line, as
   fast as it can. It also runs three times directly (stdout to a file, no pilot: before,
   and twice after; the median is the baseline). The payload times itself, so the ratio
   compares payload wall times;
2. a ``steady`` ticker printing a time-stamped line every 50 ms for ``--ticker-s`` seconds;
3. a ``sporadic`` ticker printing ``--sporadic-lines`` lines 1.3 s apart (output after a
   quiet period, as a job reporting progress does).

Each ticker is followed with the real ``gridpilot logs JOB --follow`` (its default poll
interval) from before it starts; a line's latency is from the time stamp in it to when the
follow command printed it. The coordinator's ``--max-log-bytes`` is raised so that every
byte is shipped. Prints a table with the goals and writes ``bench/results/live_logs.json``;
``--smoke`` is 20 MB and shorter tickers.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

import psutil
import requests

from bench.harness import REPO, arguments, start_coordinator, write_result
from coordinator.logic.auth import issue_token, load_or_create_signing_key
from protocol import API_PREFIX, Role

MIB = 1024 * 1024
GOAL_RATIO = 1.05
GOAL_P95_S = 1.0
SPORADIC_GAP_S = 1.3
WRITER = """
import sys, time
started = time.monotonic()
line = ("x" * 99 + "\\n").encode()
out = sys.stdout.buffer
# One write per line, as a chatty program does: the cost per line is what shipping could add.
for _ in range(int(sys.argv[1]) * 1024 * 1024 // len(line)):
    out.write(line)
out.flush()
print(f"elapsed_s {time.monotonic() - started:.6f}", file=sys.stderr)
"""
TICKER = """
import sys, time
gap_s, count = float(sys.argv[1]), int(sys.argv[2])
for _ in range(count):
    print(f"tick {time.time():.6f}", flush=True)
    time.sleep(gap_s)
"""


def elapsed_from(stderr_path: Path) -> float:
    return float(stderr_path.read_text().split()[-1])


def run_direct(base: Path, writer: Path, size_mb: int) -> float:
    with open(base / "direct.out", "wb") as out, open(base / "direct.err", "wb") as err:
        # The payload's environment as the wrapper builds it: no PYTHON* variables (an
        # inherited PYTHONUNBUFFERED would make the baseline 5x slower and flatter the ratio).
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        subprocess.run([sys.executable, str(writer), str(size_mb)], stdout=out, stderr=err, env=env)
    return elapsed_from(base / "direct.err")


def submit(url: str, token: str, script: Path, *arguments: str) -> int:
    description = {
        "Executable": sys.executable,
        "Arguments": " ".join([str(script), *arguments]),
        "StdOutput": "StdOut",
        "StdError": "StdErr",
    }
    reply = requests.post(
        f"{url}{API_PREFIX}/jobs",
        json={"description": json.dumps(description), "format": "json"},
        headers={"Authorization": f"Bearer {token}"},
    )
    reply.raise_for_status()
    job_id: int = reply.json()["job_ids"][0]
    return job_id


class Follower(threading.Thread):
    """``gridpilot logs JOB --follow``; stamps each line when the command prints it."""

    def __init__(self, url: str, token: str, job_id: int) -> None:
        super().__init__(daemon=True)
        command = [sys.executable, "-m", "client", "logs", str(job_id), "--follow"]
        self.process = subprocess.Popen(
            [*command, "--url", url, "--token", token], cwd=REPO, stdout=subprocess.PIPE
        )
        self.latencies_s: list[float] = []

    def run(self) -> None:
        stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        for line in stdout:
            seen_s = time.time()
            self.latencies_s.append(seen_s - float(line.split()[1]))
        self.process.wait()


def stored_bytes(url: str, token: str, job_id: int) -> int:
    reply = requests.get(
        f"{url}{API_PREFIX}/jobs/{job_id}/logs/stdout",
        params={"limit": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    return int(reply.headers["X-Log-Size"])


def run_pilot(url: str, base: Path, pilot_token: str) -> None:
    (base / "pilot.token").write_text(pilot_token)
    subprocess.run(
        [sys.executable, "-m", "pilot", "pilot", "--url", url, "--cores", "1",
         "--token-file", str(base / "pilot.token"), "--workdir", str(base / "work"),
         "--idle-timeout-s", "1", "--poll-interval-s", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600, check=True,
    )  # fmt: skip


def piloted(base: Path, size_mb: int, tickers: dict[str, tuple[float, int]]) -> dict[str, Any]:
    """The writer and the tickers as jobs of one pilot, the tickers followed."""
    writer, ticker = base / "writer.py", base / "ticker.py"
    data_dir = base / "coordinator"
    data_dir.mkdir()
    # Keep every shipped byte: the default cap (100 MiB per job) would stop shipping early.
    cap = str(2 * size_mb * MIB)
    server, url, pilot_token = start_coordinator(data_dir, "--max-log-bytes", cap)
    try:
        key = load_or_create_signing_key(data_dir)
        user_token = issue_token(key, subject="bench", vo="bench", role=Role.USER, ttl_s=3600)
        big = submit(url, user_token, writer, str(size_mb))
        followers = {}
        for name, (gap_s, count) in tickers.items():
            job_id = submit(url, user_token, ticker, str(gap_s), str(count))
            followers[name] = Follower(url, user_token, job_id)
            followers[name].start()
        run_pilot(url, base, pilot_token)
        for follower in followers.values():
            follower.join(timeout=60)
        return {
            "piloted_payload_s": elapsed_from(base / "work" / f"job_{big}" / "StdErr"),
            "written_bytes": (base / "work" / f"job_{big}" / "StdOut").stat().st_size,
            "shipped_bytes": stored_bytes(url, user_token, big),
            "latencies_s": {name: f.latencies_s for name, f in followers.items()},
        }
    finally:
        server.terminate()
        server.wait()


def latency_figures(latencies_s: list[float]) -> dict[str, Any]:
    quantiles = statistics.quantiles(latencies_s, n=100, method="inclusive")
    return {
        "lines": len(latencies_s),
        "p50_s": round(quantiles[49], 3),
        "p95_s": round(quantiles[94], 3),
        "max_s": round(max(latencies_s), 3),
    }


def measure(base: Path, size_mb: int, ticker_s: float, sporadic_lines: int) -> dict[str, Any]:
    (base / "writer.py").write_text(WRITER)
    (base / "ticker.py").write_text(TICKER)
    direct_runs = [run_direct(base, base / "writer.py", size_mb)]
    tickers = {
        "steady": (0.05, round(ticker_s / 0.05)),
        "sporadic": (SPORADIC_GAP_S, sporadic_lines),
    }
    run = piloted(base, size_mb, tickers)
    # Direct runs before and after the piloted one: the median is the baseline.
    direct_runs += [run_direct(base, base / "writer.py", size_mb) for _ in range(2)]
    direct_s = statistics.median(direct_runs)
    return {
        "size_mb": size_mb,
        "ticker_s": ticker_s,
        "sporadic_lines": sporadic_lines,
        "direct_payload_s": round(direct_s, 3),
        "piloted_payload_s": round(run["piloted_payload_s"], 3),
        "wall_time_ratio": round(run["piloted_payload_s"] / direct_s, 3),
        "written_bytes": run["written_bytes"],
        "shipped_bytes": run["shipped_bytes"],
        "latency": {name: latency_figures(values) for name, values in run["latencies_s"].items()},
        "goals": {"wall_time_ratio_below": GOAL_RATIO, "latency_p95_s_below": GOAL_P95_S},
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
            "date": datetime.date.today().isoformat(),
        },
    }


def print_table(result: dict[str, Any]) -> None:
    shipped = result["shipped_bytes"] / MIB
    print(f"payload writing {result['size_mb']} MB of lines: direct {result['direct_payload_s']} s"
          f" (median of 3), under pilot + shipping {result['piloted_payload_s']} s;"
          f" shipped {shipped:.1f} MiB")  # fmt: skip
    print(f"{'figure':<28} {'value':>8}   goal")
    print(f"{'wall time ratio':<28} {result['wall_time_ratio']:>8}   < {GOAL_RATIO}")
    for name, figures in result["latency"].items():
        label = f"{name} ({figures['lines']} lines)"
        print(f"{label + ' p50 s':<28} {figures['p50_s']:>8}")
        print(f"{label + ' p95 s':<28} {figures['p95_s']:>8}   < {GOAL_P95_S}")
        print(f"{label + ' max s':<28} {figures['max_s']:>8}")


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], "20 MB, short tickers, for CI", "live_logs")
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--ticker-s", type=float, default=5.0)
    parser.add_argument("--sporadic-lines", type=int, default=6)
    args = parser.parse_args()
    if args.smoke:
        args.size_mb, args.ticker_s, args.sporadic_lines = 20, 2.0, 3
    with tempfile.TemporaryDirectory(prefix="gridpilot-live-logs-") as tmp:
        result = measure(Path(tmp), args.size_mb, args.ticker_s, args.sporadic_lines)
    print_table(result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
