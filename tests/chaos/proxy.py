"""A faulty TCP proxy between pilots and the coordinator: resets, delays and cut replies.

It forwards bytes both ways and, on a seeded random schedule, misbehaves as bad networks
and middle boxes do:

- ``reset``: a new connection is reset (RST) before anything is forwarded;
- ``lost``: the request went through and was applied, but the connection is reset when
  the reply starts coming back (the pilot never hears the answer);
- ``cut``: the reply is forwarded part of the way, then the connection is reset (the pilot
  reads a body that ends too early);
- ``delay``: the reply waits a moment before it is forwarded;
- ``partition(True)``: nothing gets through either way, new connections hang unanswered,
  until ``partition(False)`` (a cut cable, a firewall dropping packets).

Faults apply to whole connections and replies, never to bytes in the middle of a request
body, so whatever reaches the coordinator is what the pilot sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import socket
import struct
import threading
import time
from collections import Counter
from typing import Optional

CHUNK_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Faults:
    reset: float = 0.05
    lost: float = 0.05
    cut: float = 0.05
    delay: float = 0.10
    max_delay_s: float = 0.3


class FaultyProxy:
    """Listens on 127.0.0.1 and forwards to ``upstream_port``; ``stop`` closes everything."""

    def __init__(self, upstream_port: int, faults: Faults, seed: int = 12) -> None:
        self.upstream_port = upstream_port
        self.faults = faults
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._partitioned = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="faulty-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def partition(self, cut: bool) -> None:
        """Cut the network (everything is dropped) or mend it (held connections reset)."""
        if cut:
            self._partitioned.set()
            return
        self._partitioned.clear()
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            _reset(sock)

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                _reset(sock)
            self._sockets.clear()
        self._thread.join(timeout=10)

    def _roll(self, fault: str) -> bool:
        with self._lock:
            hit = self._rng.random() < getattr(self.faults, fault)
            if hit:
                self.counts[fault] += 1
            return hit

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._partitioned.is_set():
                with self._lock:
                    self._held.append(client)  # no answer at all, as behind a black hole
                continue
            if self._roll("reset"):
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                _reset(client)  # the coordinator is down: as a refused connection
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, dest: socket.socket, replies: bool) -> None:
        reply_started = False
        try:
            while True:
                data = source.recv(CHUNK_BYTES)
                if not data:
                    dest.shutdown(socket.SHUT_WR)
                    return
                if self._partitioned.is_set():
                    continue  # dropped on the floor
                cut = False
                if replies and not reply_started:
                    reply_started = True
                    forwarded, cut = self._misbehave(data)
                    if forwarded is None:
                        break
                    data = forwarded
                dest.sendall(data)
                if cut:
                    break
                if replies and len(data) < CHUNK_BYTES:
                    reply_started = False  # the next bytes start the next reply
        except OSError:
            pass
        self._close(source, dest)

    def _misbehave(self, data: bytes) -> tuple[Optional[bytes], bool]:
        """What to forward of a reply's first bytes (None: nothing) and whether to reset
        the connection right after."""
        if self._roll("lost"):
            return None, True
        if self._roll("cut") and len(data) > 1:
            with self._lock:
                keep = self._rng.randrange(1, len(data))
            return data[:keep], True
        if self._roll("delay"):
            with self._lock:
                pause_s = self._rng.uniform(0.0, self.faults.max_delay_s)
            time.sleep(pause_s)
        return data, False

    def _close(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
                _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with RST (linger 0), as a crashed peer or a middle box does. The read side is
    shut down first: that wakes the other pump thread blocked reading this socket, which
    otherwise keeps it open (and the pilot waiting for its read timeout)."""
    for step in (
        lambda: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
        lambda: sock.shutdown(socket.SHUT_RD),
        sock.close,
    ):
        with contextlib.suppress(OSError):
            step()
