"""The suite's own harness: a coordinator a test starts is the one it talks to."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from tests.conftest import PortTaken, launch_coordinator


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
