"""Sandbox downloads with ``sendfile``: the file's pages go from the page cache to the
socket in the kernel, without passing through Python.

ASGI has no portable way to hand a file to the server (uvicorn does not implement the
``http.response.zerocopysend`` extension), so this module reaches, carefully, for the
connection under uvicorn's ``send``: its response cycle (``send.__self__``) and transport.
It sends the headers through ``send`` as usual, then the body with ``os.sendfile`` on the
socket, in a worker thread (waiting for the socket to drain when it is full), then tells
the cycle the body went out and ends the response through ``send``. Where any of that is
not so (another server, TLS, bytes still queued in the transport) it streams the file
through ``send`` in 1 MiB reads instead, as starlette's ``FileResponse`` would.

The file is one the local sandbox store holds (``SandboxFiles``): a store elsewhere
(object storage) answers through its own path, and this one stays for local files.
"""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Optional

from anyio import to_thread
from starlette.types import Send

logger = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024
SENDFILE_BYTES = 16 * 1024 * 1024
"""Per ``os.sendfile`` call: a bound on how long one call holds the socket."""
DRAIN_WAIT_S = 30.0
"""Longest wait for a full socket to take more bytes before the client counts as gone."""


class ClientGone(Exception):
    """The client stopped reading or closed the connection mid-download."""


async def send_file(
    send: Send, path: Path, size: int, headers: Sequence[tuple[bytes, bytes]]
) -> None:
    """A 200 answer with ``path`` (``size`` bytes) as its body; ``sendfile`` when it can."""
    start = [(b"content-length", str(size).encode()), *headers]
    with open(path, "rb") as source:
        await send({"type": "http.response.start", "status": 200, "headers": start})
        cycle = _uvicorn_cycle(send)
        if cycle is not None and size > 0:
            # The thread writes to a duplicate of the socket's descriptor: should the loop
            # close the connection meanwhile (the client left), the number cannot be given
            # to the next connection accepted while the thread still writes to it (which
            # sent the rest of this file as the start of another client's answer).
            socket_fd = os.dup(cycle.transport.get_extra_info("socket").fileno())
            try:
                await to_thread.run_sync(_sendfile, socket_fd, source, size)
            except ClientGone as exc:
                logger.info("sandbox download of %s stopped: %s", path.name, exc)
                cycle.transport.close()
                return
            finally:
                os.close(socket_fd)
            cycle.expected_content_length -= size
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        try:
            await _stream(send, source, size)
        except ClientGone as exc:  # the file shrank under us: uvicorn closes the connection
            logger.error("sandbox %s: %s", path.name, exc)


def _uvicorn_cycle(send: Send) -> Optional[Any]:
    """uvicorn's response cycle behind ``send``, if its socket can take ``sendfile`` now:
    a plain TCP socket (no TLS) with nothing left in the transport's buffer."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not type(cycle).__module__.startswith("uvicorn.protocols.http"):
        return None
    if not hasattr(cycle, "expected_content_length"):
        return None
    if transport.get_extra_info("sslcontext") is not None:
        return None
    if transport.get_extra_info("socket") is None or transport.get_write_buffer_size():
        return None
    return cycle


def _sendfile(fd: int, source: BinaryIO, size: int) -> None:
    """All ``size`` bytes of ``source`` to the socket ``fd``, in a worker thread."""
    offset = 0
    while offset < size:
        try:
            sent = os.sendfile(fd, source.fileno(), offset, min(SENDFILE_BYTES, size - offset))
        except BlockingIOError:
            _, writable, _ = select.select([], [fd], [], DRAIN_WAIT_S)
            if not writable:
                raise ClientGone(f"not reading for {DRAIN_WAIT_S:.0f} s") from None
            continue
        except OSError as exc:  # reset, broken pipe
            raise ClientGone(str(exc)) from exc
        if sent == 0:
            raise ClientGone(f"the file ended at {offset} of {size} bytes")
        offset += sent


async def _stream(send: Send, source: BinaryIO, size: int) -> None:
    left = size
    while left > 0:
        chunk = await to_thread.run_sync(source.read, min(READ_BYTES, left))
        if not chunk:
            raise ClientGone(f"the file ended {left} bytes short")
        left -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
    if size == 0:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
