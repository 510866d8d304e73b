"""What every benchmark shares: where the repository is, a coordinator to measure against,
the ``--smoke``/``--output`` arguments and the result file, and how a benchmark starts a
role of its own in a fresh process.

A benchmark is run as a module from the repository root (``.venv/bin/python -m
bench.matching``): ``bench`` and ``tests`` then import like any package, and no script sets
``sys.path`` by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from bench.profiles import Profiler

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def module_command(name: str, *args: str) -> list[str]:
    """The command that runs ``bench/<name>.py`` in a process of its own (with ``cwd=REPO``)."""
    return [sys.executable, "-m", f"bench.{name}", *args]


def child_env() -> dict[str, str]:
    """This process's environment, with the repository importable wherever a child starts."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


def arguments(
    description: str | None,
    smoke_help: str,
    result_name: str,
    *,
    profile: bool = False,
    **options: Any,
) -> argparse.ArgumentParser:
    """A parser with the two options every benchmark has: ``--smoke`` and ``--output``
    (default ``bench/results/<result_name>.json``); ``options`` go to ``ArgumentParser``."""
    parser = argparse.ArgumentParser(description=description, **options)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--output", type=Path, default=RESULTS / f"{result_name}.json")
    if not profile:
        return parser
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record a py-spy profile of each coordinator started into DIR (bench/profiles.py)",
    )
    return parser


def write_result(path: Path, result: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


_PROFILERS: dict[int, Profiler] = {}
"""The py-spy recording of each coordinator started with ``profile``, by its pid."""


def start_coordinator(
    data_dir: Path, *serve_options: str, profile: Path | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    """``gridpilot serve`` on a free port over ``data_dir``: the process, its URL, a pilot
    token. ``profile``: a file (``.raw``) to record a py-spy profile of it into until
    ``stop``."""
    from coordinator.logic.auth import issue_token, load_or_create_signing_key
    from protocol import Role

    key = load_or_create_signing_key(data_dir)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    args += serve_options
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [sys.executable, "-m", "coordinator", *args], cwd=REPO, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    token = issue_token(key, subject="bench-pilot", vo="bench", role=Role.PILOT, ttl_s=3600)
    if profile is not None:
        _PROFILERS[server.pid] = Profiler(server.pid, profile)
    return server, url, token


def stop(server: subprocess.Popen[bytes]) -> None:
    profiler = _PROFILERS.pop(server.pid, None)
    if profiler is not None:
        profiler.stop()
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
