"""A TCP port on 127.0.0.1 for a server a test starts, which no other test process on this
machine is handed at the same time.

Binding port 0 asks the kernel for a free port, free only until someone binds it: with
pytest-xdist's workers (and other runs) on the machine, two processes asking within the
same second may be handed the same port, and an outgoing connection may take a port of the
kernel's ephemeral range as its local port before our server binds it. So ports come from
below that range (``net.ipv4.ip_local_port_range``), in turn, from a cursor that every test
process of this user shares (a file under ``flock``): a port is handed out again only after
every other port of the range has been, and only if it can be bound at that moment.
``tests/conftest.py`` still checks that the coordinator it started is the one listening.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from pathlib import Path

FIRST_PORT = 20_000
MIN_PORTS = 1_000
"""Fewer ports than this below the ephemeral range (an odd sysctl): ask the kernel."""
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    ports = _reserved_range()
    if len(ports) < MIN_PORTS:
        return _kernel_port()
    cursor_path = Path(tempfile.gettempdir()) / f"gridpilot-test-ports-{os.getuid()}"
    fd = os.open(cursor_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = 0
        with contextlib.suppress(ValueError):
            last = int(os.pread(fd, 16, 0).decode() or "0")
        start = (last - ports.start + 1) % len(ports) if last in ports else 0
        for step in range(len(ports)):
            port = ports[(start + step) % len(ports)]
            if _bindable(port):
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(port).encode(), 0)
                return port
    finally:
        os.close(fd)  # releases the lock
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _reserved_range() -> range:
    """The ports below the kernel's ephemeral range, from FIRST_PORT."""
    try:
        ephemeral_low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    return range(FIRST_PORT, ephemeral_low)


def _bindable(port: int) -> bool:
    # No SO_REUSEADDR: a port with connections lingering in TIME_WAIT is passed over too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
