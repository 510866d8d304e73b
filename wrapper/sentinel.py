"""Payloads die with their pilot: a sentinel process kills what the pilot started once the
pilot is gone, so a job rescheduled after its pilot was SIGKILLed never runs twice.

A payload started by plain execution is an ordinary child of the pilot: when the pilot is
killed outright it is re-parented to init and keeps running, while the coordinator gives
its job to another pilot. bubblewrap's ``--die-with-parent`` covers containers; for the
rest the pilot starts one sentinel, from its main thread, when it starts:

- the sentinel's stdin is a pipe only the pilot writes to (the write end is never
  inherited); the pilot writes ``+PID`` when a payload starts (its process group and
  session, the wrapper starts each payload in a session of its own) and ``-PID`` when it
  has been reaped;
- the pilot's death closes the pipe (EOF), and the sentinel also asks for
  ``PR_SET_PDEATHSIG`` (``wrapper.prctl``; sent when the pilot's main thread ends, hence
  started from it);
- then it kills (TERM, a second, KILL, until none is left) every process still in a
  registered session, and every process carrying a job's ``GRIDPILOT_WORKDIR`` below the
  pilot's work dir (a daemon that double-forked and left the session), and exits.

The sentinel runs ``python -I -S`` with nothing but this module and ``wrapper.prctl``
imported (the standard library alone: it starts in some 20 ms and works from the
single-file pilot's cache), in a session of its own (a kill of the pilot's process group
does not take it along) and a bare environment. When the pilot ends normally it closes the
pipe too: the sentinel then finds nothing left to kill and exits.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional

from wrapper.prctl import die_with_parent

logger = logging.getLogger(__name__)

PROC = "/proc"
MARKER = "GRIDPILOT_WORKDIR"
KILL_GRACE_S = 1.0
KILL_ROUNDS = 20
CLOSE_WAIT_S = 10.0
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from wrapper.sentinel import main; main()"


class Sentinel:
    """The pilot's end: start the sentinel, tell it about payloads, close it at exit."""

    def __init__(self, process: subprocess.Popen[bytes], pipe_fd: int) -> None:
        self._process = process
        self._fd: Optional[int] = pipe_fd
        self._lock = threading.Lock()
        self.pid = process.pid

    @classmethod
    def start(cls, workdir: Path) -> Optional[Sentinel]:
        """Start the sentinel; call from the pilot's main thread. None if it cannot start."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the sentinel must be started from the main thread")
        root = str(Path(__file__).resolve().parent.parent)
        read_fd, write_fd = os.pipe()  # neither end inheritable: only stdin is passed on
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _BOOT, root, str(os.getpid()), str(workdir)],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                env={"PATH": os.defpath},
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            os.close(write_fd)
            logger.error("payloads will not die with the pilot: no sentinel (%s)", exc)
            return None
        finally:
            os.close(read_fd)
        logger.info("sentinel %d started: payloads die with this pilot", process.pid)
        return cls(process, write_fd)

    def watch(self, pid: int) -> None:
        """A payload started as the leader of session ``pid``; any thread."""
        self._say(f"+{pid}\n")

    def release(self, pid: int) -> None:
        """The payload of session ``pid`` was reaped (its pid may be reused)."""
        self._say(f"-{pid}\n")

    def close(self) -> None:
        """The pilot is ending: the sentinel kills what is left and exits."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        os.close(fd)
        try:
            self._process.wait(timeout=CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            logger.warning("sentinel %d still running at exit", self.pid)

    def _say(self, line: str) -> None:
        with self._lock:
            if self._fd is None:
                return
            try:
                os.write(self._fd, line.encode())
            except OSError as exc:  # it died: payloads will not die with the pilot
                logger.error("sentinel %d gone (%s)", self.pid, exc)
                os.close(self._fd)
                self._fd = None


# ------------------------------------------------------------------- the sentinel itself


class _PilotGone(Exception):
    pass


def _pilot_gone(signum: int, frame: object) -> None:
    raise _PilotGone()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The sentinel process: ``argv`` is [root, pilot pid, pilot work dir]."""
    args = list(sys.argv[1:] if argv is None else argv)
    pilot_pid, workdir = int(args[1]), args[2]
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)  # the batch system's signals are the pilot's
    signal.signal(signal.SIGTERM, _pilot_gone)
    sessions: set[int] = set()
    try:
        if die_with_parent(signal.SIGTERM, pilot_pid):
            _follow(sessions)
    except _PilotGone:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    marker = f"{MARKER}={workdir.rstrip('/')}/job_".encode()
    kill_all(sessions, marker)


def _follow(sessions: set[int]) -> None:
    """Read ``+PID``/``-PID`` lines from the pilot until the pipe closes."""
    pending = b""
    while True:
        data = os.read(0, 4096)
        if not data:
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                sessions.add(int(line[1:]))
            elif line[:1] == b"-":
                sessions.discard(int(line[1:]))


def kill_all(sessions: Iterable[int], marker: bytes) -> list[int]:
    """TERM, then KILL, the payloads' processes until none is left; the pids found."""
    wanted = set(sessions)
    found: list[int] = []
    for round_ in range(KILL_ROUNDS):
        pids = payload_processes(wanted, marker)
        if not pids:
            return found
        found.extend(pid for pid in pids if pid not in found)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM if round_ == 0 else signal.SIGKILL)
            except OSError:
                continue
        time.sleep(KILL_GRACE_S if round_ == 0 else 0.1)
    return found


def payload_processes(sessions: set[int], marker: bytes) -> list[int]:
    """Processes in one of ``sessions``, or whose environment has a variable starting with
    ``marker``; never this process."""
    own = os.getpid()
    pids = []
    for name in os.listdir(PROC):
        if not name.isdigit() or int(name) == own:
            continue
        if _session_of(name) in sessions or _has_marker(name, marker):
            pids.append(int(name))
    return pids


def _session_of(pid: str) -> Optional[int]:
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    # After the command name: state, ppid, pgrp, session, ...; a zombie is already dead.
    if len(fields) < 4 or fields[0] == b"Z":
        return None
    return int(fields[3])


def _has_marker(pid: str, marker: bytes) -> bool:
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as environ:
            return any(item.startswith(marker) for item in environ.read().split(b"\0"))
    except OSError:
        return False
