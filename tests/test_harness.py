"""The suite's own harness: a coordinator a test starts is the one it talks to."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, PortTaken, launch_coordinator


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_port_held_by_another_healthy_server_is_not_taken_for_ours(tmp_path: Path) -> None:
    # Seen in CI: a metrics test got 200 from another test's coordinator on "its" port.
    other = http.server.HTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with pytest.raises(PortTaken):
            launch_coordinator(tmp_path / "data", other.server_address[1])
    finally:
        other.shutdown()
        other.server_close()


def test_concurrent_test_processes_are_never_handed_the_same_port() -> None:
    # pytest-xdist's workers ask at the same time; a port is free only until bound.
    script = (
        "import sys, time\n"
        "from tests.services.ports import free_port\n"
        "time.sleep(max(0.0, float(sys.argv[1]) - time.time()))\n"
        "print(' '.join(str(free_port()) for _ in range(300)))\n"
    )
    start_at = str(time.time() + 2.0)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, start_at],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    ports = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        ports += [int(port) for port in out.split()]
    assert len(ports) == 1200
    assert len(set(ports)) == len(ports)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(port < low for port in ports)  # never one an outgoing connection may take
