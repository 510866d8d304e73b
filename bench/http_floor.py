"""The plain-HTTP floors bench/sandboxes.py compares our transfers with, each in a process.

- ``stdlib``: ``http.server`` streaming a PUT body to a file and a file back on GET, with
  1 MiB reads and writes: what a plain HTTP server costs, the floor curl is measured against;
- ``asgi``: the least an ASGI app under uvicorn (our coordinator's server) can do: take the
  PUT body message by message and write it to a file. No framework, no hashing, no fsync.
  Any other method: read the body and answer ``{}`` as JSON, the floor of one API request
  (bench/matching.py and bench/heartbeats.py send it the very requests they send the
  coordinator).

    python -m bench.http_floor stdlib|asgi DIR PORT
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench.harness import REPO, module_command

BUFFER_BYTES = 1024 * 1024


class FloorHandler(http.server.BaseHTTPRequestHandler):
    """PUT /name stores the body in the server's directory; GET /name sends it back."""

    protocol_version = "HTTP/1.1"

    def _path(self) -> Path:
        return Path(os.getcwd()) / Path(self.path).name

    def do_PUT(self) -> None:
        remaining = int(self.headers["Content-Length"])
        with open(self._path(), "wb") as out:
            while remaining > 0:
                chunk = self.rfile.read(min(BUFFER_BYTES, remaining))
                if not chunk:
                    break
                out.write(chunk)
                remaining -= len(chunk)
        self.send_response(201 if remaining == 0 else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = self._path()
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        with open(path, "rb") as source:
            shutil.copyfileobj(source, self.wfile, BUFFER_BYTES)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a line per request would only add noise to the bench's output."""


Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


async def asgi_floor(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """PUT: the body to a file named by the path, message by message; else ``{}``."""
    if scope["type"] != "http":
        return
    if scope["method"] != "PUT":
        await _answer_json(receive, send)
        return
    with open(Path(os.getcwd()) / Path(scope["path"]).name, "wb") as out:
        more = True
        while more:
            message = await receive()
            out.write(message.get("body", b""))
            more = message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


async def _answer_json(receive: Receive, send: Send) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


def serve(kind: str, directory: Path, port: int) -> None:
    os.chdir(directory)
    if kind == "stdlib":
        http.server.ThreadingHTTPServer(("127.0.0.1", port), FloorHandler).serve_forever()
    else:
        import uvicorn

        uvicorn.run(asgi_floor, host="127.0.0.1", port=port, log_level="warning")


def start(kind: str, directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start one floor server on a free port; returns the process and its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        module_command("http_floor", kind, str(directory), str(port)), cwd=REPO
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"http://127.0.0.1:{port}"
        time.sleep(0.05)
    server.kill()
    raise SystemExit(f"the {kind} HTTP floor server did not start")


if __name__ == "__main__":
    serve(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
