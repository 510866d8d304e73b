"""A free TCP port on 127.0.0.1 for a server a test starts (free until someone binds it:
``tests/conftest.py`` checks that the coordinator it started is the one listening)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
