"""Run the coordinator: blocking (``run_server``), in a thread (``start_in_thread``), or
``python -m coordinator.server --data-dir D [--port P] [--host H]``."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from coordinator.api.hotpath import serving_app
from coordinator.app import create_app
from coordinator.errors import CoordinatorError
from coordinator.settings import Settings

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0
GRACEFUL_SHUTDOWN_S = 8
"""Longest wait for open connections at a stop (below Docker's default 10 s stop timeout)."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ServerStartError(CoordinatorError):
    code = "server_start"


def _config(settings: Settings, *, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(
        serving_app(create_app(settings)),
        host=settings.host,
        port=settings.port,
        # The process's own logging setup (``gridpilot serve --log-level``) decides what shows.
        log_config=None,
        access_log=access_log,
        # Sandboxes can be large: stream them without a per-request timeout.
        timeout_keep_alive=30,
        # HTTPS when a certificate is configured (``gridpilot serve --tls-cert/--tls-key``).
        ssl_certfile=settings.tls_cert_file or None,
        ssl_keyfile=settings.tls_key_file or None,
        # On SIGTERM uvicorn waits for open connections to close, and pilots keep theirs
        # open (keep-alive; over TLS a closed idle connection may linger too): without a
        # bound, a stop waits for systemd's or Docker's SIGKILL. Pilots retry what is cut.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def run_server(settings: Settings) -> None:
    """Serve until interrupted (SIGINT/SIGTERM)."""
    uvicorn.Server(_config(settings, access_log=True)).run()


class EmbeddedServer:
    """A coordinator serving from a background thread of this process."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
        self._server = server
        self._thread = thread
        self.url = url

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)


def start_in_thread(settings: Settings) -> EmbeddedServer:
    """Start serving in a daemon thread and return once it accepts connections.

    ``settings.port`` 0 picks a free port; ``.url`` says which one it got.
    """
    server = uvicorn.Server(_config(settings, access_log=False))
    thread = threading.Thread(target=server.run, name="gridpilot-coordinator", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ServerStartError(
                f"the coordinator did not start on {settings.host}:{settings.port}"
            )
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if settings.tls_cert_file else "http"
    return EmbeddedServer(server, thread, f"{scheme}://{settings.host}:{port}")
