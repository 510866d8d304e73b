"""A large output sandbox through the wrapper, a real coordinator and back, with peak memory.

    .venv/bin/python -m bench.large_sandbox --size-mb 2048

Starts a coordinator on 127.0.0.1 in a temporary directory (or uses ``--url``, ``--token``
and ``--coordinator-pid``), then runs two processes of its own:

1. a wrapper (``JobRun``, plain runtime, the pilot's ``CoordinatorClient`` as transport)
   whose payload writes ``--size-mb`` of incompressible data (a 16 MB random block repeated:
   further apart than deflate's 32 KB window, so it does not compress) and names it in
   OutputSandbox; the wrapper packs it and uploads it;
2. a downloader that fetches the sandbox (sha256 verified) and unpacks it.

While they run, the coordinator's resident memory is sampled every 50 ms. Prints one JSON
object: seconds per phase and peak RSS of the wrapper, the downloader and the coordinator.
``tests/wrapper/test_large_sandbox.py`` runs this with 512 MB and asserts the bounds.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.harness import REPO, module_command, start_coordinator
from pilot.client import CoordinatorClient
from protocol import JobAssignment
from wrapper.job import JobRun, WrapperConfig
from wrapper.sandbox import unpack

MIB = 1024**2
BLOCK_MB = 16
PAYLOAD = """
import os
block = os.urandom({block} * 1024 * 1024)
with open("big.dat", "wb") as out:
    for _ in range({blocks}):
        out.write(block)
"""


def peak_rss_bytes() -> int:
    """This process's own peak (VmHWM): ru_maxrss would include the parent that started it,
    as Linux carries ru_maxrss over fork and exec."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_wrapper(url: str, token: str, base: Path, size_mb: int) -> dict[str, Any]:
    """Role 1: one job whose output sandbox is ``size_mb`` of incompressible data."""
    payload = PAYLOAD.format(block=BLOCK_MB, blocks=max(1, size_mb // BLOCK_MB))
    job = JobAssignment(
        job_id=1, executable=sys.executable, arguments=["-c", payload], output_sandbox=["big.dat"]
    )
    config = WrapperConfig(max_output_sandbox_bytes=(size_mb + 1) * MIB)
    outcome = JobRun(job, base / "job_1", CoordinatorClient(url, token), config).run()
    shutil.rmtree(base / "job_1")  # as the pilot does; the disk holds one copy at a time
    return {
        "status": outcome.status.value,
        "minor_status": outcome.minor_status,
        "sha256": outcome.output_sandbox,
        "payload_s": outcome.timings_s.get("payload"),
        "pack_and_upload_s": outcome.timings_s.get("stage_out"),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def run_download(url: str, token: str, base: Path, sha256: str) -> dict[str, Any]:
    """Role 2: fetch (sha256 verified by the client) and unpack."""
    archive = base / "download.tar.gz"
    started_s = time.monotonic()
    CoordinatorClient(url, token).download_sandbox(sha256, archive)
    downloaded_s = time.monotonic()
    unpack(archive, base / "unpacked")
    return {
        "download_s": downloaded_s - started_s,
        "unpack_s": time.monotonic() - downloaded_s,
        "archive_bytes": archive.stat().st_size,
        "unpacked_bytes": (base / "unpacked" / "big.dat").stat().st_size,
        "peak_rss_bytes": peak_rss_bytes(),
    }


class RssSampler(threading.Thread):
    """Highest resident memory of one process, sampled until ``stop``."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self._done = threading.Event()
        self.baseline_bytes = self._process.memory_info().rss
        self.peak_bytes = self.baseline_bytes

    def run(self) -> None:
        while not self._done.wait(self._interval_s):
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def stop(self) -> None:
        self._done.set()
        self.join()


def role(name: str, *args: str) -> dict[str, Any]:
    """Run one role in its own process, so its peak memory is its own."""
    command = module_command("large_sandbox", "--role", name, *args)
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(url: str, token: str, coordinator_pid: int, base: Path, size_mb: int) -> dict[str, Any]:
    sampler = RssSampler(coordinator_pid)
    sampler.start()
    try:
        wrapper = role(
            "wrapper", "--url", url, "--token", token, "--dir", str(base), "--size-mb", str(size_mb)
        )
        download = role(
            "download",
            "--url",
            url,
            "--token",
            token,
            "--dir",
            str(base),
            "--sha256",
            wrapper["sha256"],
        )
    finally:
        sampler.stop()
    return {
        "size_mb": size_mb,
        "wrapper": wrapper,
        "download": download,
        "coordinator": {
            "baseline_rss_bytes": sampler.baseline_bytes,
            "peak_rss_bytes": sampler.peak_bytes,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--coordinator-pid", type=int)
    parser.add_argument("--dir", type=Path, help="where to work (default: a temporary dir)")
    parser.add_argument("--role", choices=["wrapper", "download"], help=argparse.SUPPRESS)
    parser.add_argument("--sha256", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "wrapper":
        print(json.dumps(run_wrapper(args.url, args.token, args.dir, args.size_mb)))
        return
    if args.role == "download":
        print(json.dumps(run_download(args.url, args.token, args.dir, args.sha256)))
        return
    with tempfile.TemporaryDirectory(prefix="gridpilot-bench-", dir=args.dir) as tmp:
        base = Path(tmp)
        if args.url:
            result = measure(args.url, args.token, args.coordinator_pid, base, args.size_mb)
        else:
            (base / "coordinator").mkdir()
            server, url, token = start_coordinator(base / "coordinator")
            try:
                result = measure(url, token, server.pid, base / "run", args.size_mb)
            finally:
                server.terminate()
                server.wait(timeout=30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
