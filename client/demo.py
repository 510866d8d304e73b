"""``gridpilot demo``: the EGI Workload Manager tutorial's round trip on one machine.

An embedded coordinator (SQLite in a data dir), one real pilot process, the tutorial's
hello-world JDL, its status changes, its output sandbox fetched and StdOut printed; then
everything it started is stopped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from client.api import UserClient
from client.connection import Connection
from client.display import format_history, format_status
from client.output import retrieve_output
from coordinator.logic.auth import issue_token, load_or_create_signing_key
from coordinator.logic.presets import TUTORIAL_JDL
from coordinator.server import start_in_thread
from coordinator.settings import Settings
from protocol import FINAL_STATUSES, JobStatus, Role, SubmitRequest

DEMO_VO = "demo"
TOKEN_TTL_S = 3600
POLL_S = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")


def _start_pilot(url: str, token_file: Path, workdir: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "pilot", "pilot",
        "--url", url,
        "--token-file", str(token_file),
        "--workdir", str(workdir),
        "--idle-timeout-s", "30",
        "--poll-interval-s", "1",
        "--log-level", "ERROR",
    ]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def _follow(
    client: UserClient, job_id: int, timeout_s: float, say: Callable[[str], None]
) -> JobStatus:
    """Print each status change until the job is final (or the timeout passes)."""
    seen: Optional[tuple[str, str]] = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.job(job_id)
        now = (info.status.value, info.minor_status)
        if now != seen:
            say(format_status(info))
            seen = now
        if info.status in FINAL_STATUSES:
            return info.status
        time.sleep(POLL_S)
    say(f"job {job_id} not finished after {timeout_s:.0f} s")
    return JobStatus(seen[0]) if seen else JobStatus.WAITING


def run_demo(data_dir: Optional[Path], timeout_s: float, say: Callable[[str], None]) -> int:
    """Returns the process exit code: 0 when the job ended Done and its output came back."""
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="gridpilot-demo-")) if data_dir is None else data_dir
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    settings = Settings(data_dir=root / "coordinator", port=free_port(), heartbeat_interval_s=5)
    key = load_or_create_signing_key(settings.data_dir)
    user_token = issue_token(
        key, subject="demo-user", vo=DEMO_VO, role=Role.USER, ttl_s=TOKEN_TTL_S
    )
    pilot_token_file = root / "pilot" / "pilot.token"
    _write_secret(
        pilot_token_file,
        issue_token(key, subject="demo-pilot", vo=DEMO_VO, role=Role.PILOT, ttl_s=TOKEN_TTL_S),
    )
    server = start_in_thread(settings)
    pilot: Optional[subprocess.Popen[bytes]] = None
    client = UserClient(Connection(server.url, user_token, "the demo", True, 30.0, 2.0))
    try:
        say(f"coordinator: {server.url} (data in {settings.data_dir})")
        say("submitting the tutorial job:\n" + TUTORIAL_JDL)
        job_id = client.submit(SubmitRequest(description=TUTORIAL_JDL)).job_ids[0]
        say(f"JobID = {job_id}")
        pilot = _start_pilot(server.url, pilot_token_file, root / "pilot" / "work")
        say(f"pilot started (pid {pilot.pid})")
        final = _follow(client, job_id, timeout_s, say)
        say("status history (gridpilot logging-info):")
        for line in format_history(client.history(job_id)):
            say("  " + line)
        if final is not JobStatus.DONE:
            return 1
        return _show_output(client, job_id, root / "output", say)
    finally:
        if pilot is not None:
            pilot.terminate()
            pilot.wait(timeout=30)
        client.close()
        server.stop()
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
        else:
            say(f"data kept in {root}")


def _show_output(client: UserClient, job_id: int, out_dir: Path, say: Callable[[str], None]) -> int:
    target, names = retrieve_output(client, job_id, out_dir)
    say(f"output sandbox retrieved in {target}/: {', '.join(sorted(names))}")
    say("---- StdOut ----")
    say((target / "StdOut").read_text(encoding="utf-8", errors="replace").rstrip("\n"))
    return 0
