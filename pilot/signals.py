"""Signals and wake-ups for the pilot's loop, without locks in signal handlers.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds a lock the handler would need (an ``Event``'s condition, the agent's lock): a
handler that takes a lock can deadlock the pilot. So the handler here only appends the
signal number to a deque (atomic) and writes one byte to a pipe; the loop, which sleeps in
``select`` on that pipe, wakes at once and handles the signal in ordinary code. Job threads
wake the loop through the same pipe.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import signal
from types import FrameType
from typing import Optional

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DUMP_SIGNAL = signal.SIGUSR1


class Waker:
    """A self-pipe: ``wake`` from any thread or signal handler, ``wait`` in the loop."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def wake(self) -> None:
        try:
            os.write(self._write_fd, b"!")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the loop will wake anyway
        except OSError:
            pass  # closed at exit: nobody is waiting any more

    def wait(self, timeout_s: float) -> None:
        """Sleep until woken or ``timeout_s`` passed; swallow pending wake-ups."""
        try:
            ready, _, _ = select.select([self._read_fd], [], [], max(0.0, timeout_s))
        except InterruptedError:
            return  # a signal arrived: the caller looks at its inbox next
        if ready:
            try:
                while os.read(self._read_fd, 4096):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class SignalInbox:
    """Signals received and not yet handled, oldest first."""

    def __init__(self, waker: Waker) -> None:
        self._pending: collections.deque[int] = collections.deque()
        self._waker = waker
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Route SIGTERM, SIGINT and SIGUSR1 here (main thread only)."""
        for signum in (*STOP_SIGNALS, DUMP_SIGNAL):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _on_signal(self, signum: int, _frame: Optional[FrameType]) -> None:
        self._pending.append(signum)
        self._waker.wake()

    def stop_pending(self) -> bool:
        """A stop signal came in and the loop has not handled it yet."""
        return any(signum in STOP_SIGNALS for signum in list(self._pending))

    def drain(self) -> list[int]:
        """The signals received since the last call."""
        received: list[int] = []
        while self._pending:
            received.append(self._pending.popleft())
        return received


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
