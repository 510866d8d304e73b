"""Live logs: ship the payload's stdout/stderr files to the coordinator while it runs.

The payload writes straight into its StdOutput/StdError files (``wrapper.plain``); those
files are the spool. A ``LogShipper`` thread tails them from the last offset the
coordinator acknowledged and sends new bytes in chunks, so the payload is never slowed by
a pipe, a crash loses nothing already written, and an unreachable coordinator only means
a longer unshipped tail on disk, shipped once it answers again.

The sender is injected (the pilot's client, wrapped by ``pilot.joblogs``) and speaks in
the three errors below, so this module needs nothing but the standard library.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional

from wrapper.errors import WrapperError
from wrapper.patterns import path_inside

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 256 * 1024
DEFAULT_INTERVAL_S = 1.0
"""At most one round of requests per stream and interval."""
DEFAULT_CHECK_INTERVAL_S = 0.2
"""How often the files' sizes are looked at (a local stat, no request): output after a quiet
spell is shipped this soon rather than up to a whole interval later."""
DEFAULT_MAX_BYTES_PER_INTERVAL = 16 * 1024 * 1024
"""Catching up after an outage goes at most this fast, so the node is not flooded."""
DEFAULT_FINAL_FLUSH_S = 10.0
"""How long the last flush may keep trying before the final status is sent anyway."""
STREAMS = ("stdout", "stderr")


class LogShippingError(WrapperError):
    """Root of what a log sender raises."""


class LogGap(LogShippingError):
    """The coordinator holds a different amount than we thought: go on from there."""

    def __init__(self, expected_offset: int) -> None:
        super().__init__(f"coordinator expects offset {expected_offset}")
        self.expected_offset = expected_offset


class LogRefused(LogShippingError):
    """The coordinator will take no more of this job's log (size cap, final job, lease)."""


class LogUnreachable(LogShippingError):
    """The coordinator did not answer; try again next interval."""


class LogGiveUp(LogShippingError):
    """Stop shipping now (the pilot is leaving its slot): the rest stays in the files."""


Sender = Callable[[str, int, bytes], int]
"""``send(stream, offset, data) -> next_offset`` as the coordinator acknowledged it."""


def stream_files(workdir: Path, stdout_name: str, stderr_name: str) -> dict[str, Path]:
    """The files to tail per stream; one file named twice is shipped once, as stdout.

    Names that would leave the work dir are left out (the wrapper fails such a job).
    """
    files: dict[str, Path] = {}
    for stream, name in (("stdout", stdout_name), ("stderr", stderr_name)):
        path = path_inside(workdir, name)
        if path is not None and path not in files.values():
            files[stream] = path
    return files


class LogShipper:
    """Tails each stream's file in its own thread and ships what is new, in order."""

    def __init__(
        self,
        files: Mapping[str, Path],
        send: Sender,
        *,
        label: str = "job",
        max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_bytes_per_interval: int = DEFAULT_MAX_BYTES_PER_INTERVAL,
        final_flush_s: float = DEFAULT_FINAL_FLUSH_S,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
    ) -> None:
        self._files = dict(files)
        self._send = send
        self._label = label
        self._chunk_bytes = max_chunk_bytes
        self._interval_s = interval_s
        self._check_interval_s = min(check_interval_s, interval_s)
        self._per_interval_bytes = max_bytes_per_interval
        self._final_flush_s = final_flush_s
        self._offsets = {stream: 0 for stream in self._files}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._refused = False
        self._armed = False
        self._thread: Optional[threading.Thread] = None

    def offsets(self) -> dict[str, int]:
        """Bytes of each stream the coordinator has acknowledged (for heartbeats)."""
        with self._lock:
            return dict(self._offsets)

    def arm(self) -> None:
        """The payload has started (its files are its own now): ``close`` ships what it
        wrote, whether or not the thread was ever started. The pilot starts the thread only
        for a payload still running after a moment: one that ended at once spares a thread
        started and joined (bench/throughput.py), and its output goes in ``close``."""
        self._armed = True

    def start(self) -> None:
        self._armed = True
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"logs-{self._label}", daemon=True
            )
            self._thread.start()

    def close(self) -> dict[str, int]:
        """Stop the thread, then ship everything left; call before the final status.

        A shipper never started nor armed ships nothing: the payload did not run, and a
        file of that name may be an old one from the input sandbox.
        """
        self._stopping.set()
        if not self._armed:
            return self.offsets()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + self._final_flush_s
        while not self._refused:
            complete = self.ship_once(limit_bytes=None)
            if complete or time.monotonic() >= deadline:
                break
            time.sleep(min(self._interval_s, max(0.0, deadline - time.monotonic())))
        left = self._unshipped_bytes()
        if left and not self._refused:
            logger.warning(
                "%s: %d log bytes not shipped; they stay in the files", self._label, left
            )
        return self.offsets()

    def _run(self) -> None:
        # Requests go out at most once per interval; between two, only the file sizes are
        # checked, so the first lines after a quiet spell leave at once (bench/live_logs.py).
        last_round_s: Optional[float] = None
        while not self._stopping.is_set() and not self._refused:
            now_s = time.monotonic()
            if last_round_s is not None and now_s - last_round_s < self._interval_s:
                self._stopping.wait(self._interval_s - (now_s - last_round_s))
                continue
            if self._unshipped_bytes() > 0:
                last_round_s = now_s
                try:
                    self.ship_once(limit_bytes=self._per_interval_bytes)
                except Exception:  # boundary: a shipping bug must never touch the payload
                    logger.exception("%s: log shipping failed; stopping it", self._label)
                    return
            self._stopping.wait(self._check_interval_s)

    def ship_once(self, limit_bytes: Optional[int]) -> bool:
        """Ship new bytes of every stream, up to ``limit_bytes`` each; True when all sent."""
        complete = True
        for stream in self._files:
            if self._refused or not self._ship_stream(stream, limit_bytes):
                complete = False
        return complete and not self._refused

    def _ship_stream(self, stream: str, limit_bytes: Optional[int]) -> bool:
        """False when the coordinator could not be reached or the budget ran out."""
        budget = limit_bytes
        try:
            with open(self._files[stream], "rb") as source:
                # Up to the size seen now: chasing a file that grows while each chunk is
                # sent would make a chatty payload's round one request after another.
                end = os.fstat(source.fileno()).st_size
                while budget is None or budget > 0:
                    offset = self._offsets[stream]
                    source.seek(offset)
                    want = min(self._chunk_bytes, budget or self._chunk_bytes, end - offset)
                    chunk = source.read(max(0, want))
                    if not chunk:
                        return True
                    if not self._send_chunk(stream, offset, chunk):
                        return False
                    if budget is not None:
                        budget -= len(chunk)
        except FileNotFoundError:
            return True  # the payload has not opened it yet
        except OSError as exc:
            logger.warning("%s: cannot read %s: %s", self._label, self._files[stream], exc)
            return False
        return False

    def _send_chunk(self, stream: str, offset: int, chunk: bytes) -> bool:
        try:
            next_offset = self._send(stream, offset, chunk)
        except LogGap as gap:
            logger.info("%s: %s log resumes at %d", self._label, stream, gap.expected_offset)
            next_offset = gap.expected_offset
        except LogRefused as exc:
            logger.warning("%s: coordinator takes no more log (%s); files kept", self._label, exc)
            self._refused = True
            return False
        except LogGiveUp as exc:
            logger.warning("%s: log shipping given up (%s); files kept", self._label, exc)
            self._refused = True
            return False
        except LogUnreachable as exc:
            logger.info("%s: %s log not shipped yet (%s)", self._label, stream, exc)
            return False
        with self._lock:
            self._offsets[stream] = max(0, next_offset)
        return next_offset != offset  # no progress: wait for the next interval

    def _unshipped_bytes(self) -> int:
        left = 0
        for stream, path in self._files.items():
            try:
                left += max(0, path.stat().st_size - self._offsets[stream])
            except OSError:
                continue
        return left
