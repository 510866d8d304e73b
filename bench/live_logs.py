"""Live log shipping: does it slow the payload down, and how soon does a line show up?

    .venv/bin/python bench/live_logs.py --size-mb 200

Starts a coordinator on 127.0.0.1 in a temporary directory and runs:

1. a payload writing ``--size-mb`` of 100-byte text lines to stdout, one write per line, as
   fast as it can: three times directly (stdout to a file, no pilot; the median is the
   baseline) and once as a job run by a real ``gridpilot pilot`` with log shipping on; the
   payload times itself, so the ratio compares payload wall times;
2. a ticker job printing a time-stamped line every 50 ms for ``--ticker-s`` seconds while
   this script polls ``GET /jobs/{id}/logs/stdout`` every 50 ms: line-to-visible latency.

Prints a table and writes ``bench/results/live_logs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.large_sandbox import start_coordinator  # noqa: E402
from coordinator.logic.auth import issue_token, load_or_create_signing_key  # noqa: E402
from pilot.protocol import API_PREFIX, Role  # noqa: E402

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
end = time.time() + float(sys.argv[1])
while time.time() < end:
    print(f"tick {time.time():.6f}", flush=True)
    time.sleep(0.05)
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


def submit(url: str, token: str, script: Path, argument: str) -> int:
    description = {
        "Executable": sys.executable,
        "Arguments": f"{script} {argument}",
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


def poll_latencies(url: str, token: str, job_id: int) -> list[float]:
    """Follow the job's stdout like ``gridpilot logs --follow --poll-s 0.05`` does."""
    headers = {"Authorization": f"Bearer {token}"}
    offset, pending, latencies = 0, b"", []
    while True:
        reply = requests.get(
            f"{url}{API_PREFIX}/jobs/{job_id}/logs/stdout",
            params={"offset": offset},
            headers=headers,
        )
        seen_at = time.time()
        offset = int(reply.headers["X-Log-Next-Offset"])
        *lines, pending = (pending + reply.content).split(b"\n")
        latencies += [seen_at - float(line.split()[1]) for line in lines if line]
        if not reply.content:
            if reply.headers.get("X-Log-Complete") == "true":
                return latencies
            time.sleep(0.05)


def stored_bytes(url: str, token: str, job_id: int) -> int:
    reply = requests.get(
        f"{url}{API_PREFIX}/jobs/{job_id}/logs/stdout",
        params={"limit": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    return int(reply.headers["X-Log-Size"])


def measure(base: Path, size_mb: int, ticker_s: float) -> dict[str, Any]:
    writer, ticker = base / "writer.py", base / "ticker.py"
    writer.write_text(WRITER)
    ticker.write_text(TICKER)
    direct_runs = [run_direct(base, writer, size_mb)]
    data_dir = base / "coordinator"
    data_dir.mkdir()
    # Keep every shipped byte: the default cap (100 MiB per job) would stop shipping early.
    cap = str(2 * size_mb * 1024 * 1024)
    server, url, pilot_token = start_coordinator(data_dir, "--max-log-bytes", cap)
    try:
        key = load_or_create_signing_key(data_dir)
        user_token = issue_token(key, subject="bench", vo="bench", role=Role.USER, ttl_s=3600)
        (base / "pilot.token").write_text(pilot_token)
        big = submit(url, user_token, writer, str(size_mb))
        tick = submit(url, user_token, ticker, str(ticker_s))
        pilot = subprocess.Popen(
            [sys.executable, "-m", "pilot", "pilot", "--url", url, "--cores", "1",
             "--token-file", str(base / "pilot.token"), "--workdir", str(base / "work"),
             "--idle-timeout-s", "1", "--poll-interval-s", "0.2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        latencies = poll_latencies(url, user_token, tick)
        pilot.wait(timeout=3600)
        piloted_s = elapsed_from(base / "work" / f"job_{big}" / "StdErr")
        shipped = stored_bytes(url, user_token, big)
    finally:
        server.terminate()
        server.wait()
    # Direct runs before and after the piloted one: the median is the baseline.
    direct_runs += [run_direct(base, writer, size_mb) for _ in range(2)]
    direct_s = statistics.median(direct_runs)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "size_mb": size_mb,
        "direct_payload_s": round(direct_s, 3),
        "piloted_payload_s": round(piloted_s, 3),
        "wall_time_ratio": round(piloted_s / direct_s, 3),
        "shipped_bytes": shipped,
        "ticker_lines": len(latencies),
        "latency_p50_s": round(quantiles[49], 3),
        "latency_p95_s": round(quantiles[94], 3),
        "latency_max_s": round(max(latencies), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--ticker-s", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridpilot-live-logs-") as tmp:
        result = measure(Path(tmp), args.size_mb, args.ticker_s)
    for name, value in result.items():
        print(f"{name:<20} {value}")
    out = REPO / "bench" / "results" / "live_logs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
