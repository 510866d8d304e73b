"""Measurements of a job's resource use that psutil's per-process view does not give.

Disk used below a directory, the payload's processes found by their environment, the
proportional memory (PSS) of a set of processes, the size of a few files, and the pids a
payload's processes can have (``PidsSince``), which spares the searches over every process
of the node the processes that are older than the payload.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, Optional

import psutil

PROC = "/proc"
PID_MAX_PATH = "/proc/sys/kernel/pid_max"
LOADAVG_PATH = "/proc/loadavg"
MAX_FORKS_PER_S = 100_000
"""Far more processes and threads than a node can create per second (a fork and its exit
cost tens of microseconds of a core): bounds how soon pid numbers can come round again."""

PidTest = Callable[[int], bool]
"""True for a pid that may belong to the payload; a search skips the others."""


class PidsSince:
    """The pids given out since a payload's root was: the only ones its processes can hold.

    Linux hands out pids in increasing order, wrapping at ``pid_max``: every process the
    payload creates, whatever session, group or parent it moves to, gets a pid after the
    root's and up to the last pid given (``/proc/loadavg``, in our pid namespace). That
    holds until the numbers have come all the way round, which takes at least
    ``pid_max / MAX_FORKS_PER_S`` seconds (0.33 s at the old default of 32,768, 42 s at
    4,194,304): past that, or when ``/proc`` does not say, ``test`` is None (look at every
    process). A payload's end is usually within that time, and then the search for what it
    left behind reads a handful of processes instead of every process of the node.
    """

    def __init__(self, root_pid: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.root_pid = root_pid
        self._clock = clock
        self._since_s = clock()
        self._pid_max = _read_int(PID_MAX_PATH)

    def test(self) -> Optional[PidTest]:
        """A test for pids given out since the root (the root's included), or None."""
        pid_max = self._pid_max
        if pid_max is None or self._clock() - self._since_s >= pid_max / MAX_FORKS_PER_S:
            return None
        last_pid = _last_pid()
        if last_pid is None:
            return None
        root = self.root_pid
        span = (last_pid - root) % pid_max
        return lambda pid: (pid - root) % pid_max <= span


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path, "rb") as source:
            return int(source.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _last_pid() -> Optional[int]:
    """The pid given out last in our pid namespace (the last field of /proc/loadavg)."""
    try:
        with open(LOADAVG_PATH, "rb") as source:
            return int(source.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def process_ids(wanted: Optional[PidTest] = None) -> list[int]:
    """The pids in /proc (that pass ``wanted``, when given); [] when /proc cannot be read."""
    try:
        pids = [int(entry.name) for entry in os.scandir(PROC) if entry.name.isdigit()]
    except OSError:
        return []
    return pids if wanted is None else [pid for pid in pids if wanted(pid)]


def tree_bytes(root: Path, stop_above: int = 0) -> int:
    """Disk space used below ``root``: allocated blocks, hard links once, links not followed.

    Stops counting once over ``stop_above`` (if > 0): the answer is then only "too much".
    """
    total, seen, pending = 0, set(), [str(root)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue  # removed meanwhile, or unreadable: the payload's business
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            if (st.st_dev, st.st_ino) in seen:
                continue
            if st.st_nlink > 1:
                seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
        if 0 < stop_above < total:
            break
    return total


def marked_processes(
    marker: Mapping[str, str],
    uid: Optional[int] = None,
    since: Optional[PidsSince] = None,
) -> list[psutil.Process]:
    """Processes of user ``uid`` (default: ours) whose environment holds every ``marker``
    variable's value; only those given a pid since ``since``'s root, when it can tell.

    Reads ``/proc`` directly: the scan runs at every job's start and end, and through
    psutil it took 4.4 ms with 88 processes on the node, against 0.9 ms then, and a few
    processes' environments instead of all of them with ``since`` (bench/throughput.py).
    """
    uid, own = os.getuid() if uid is None else uid, os.getpid()
    wanted = [f"{name}={value}".encode() for name, value in marker.items()]
    found = []
    for pid in process_ids(since.test() if since is not None else None):
        try:
            # /proc/<pid> belongs to the process's user; others' environments are not ours.
            if pid == own or os.stat(f"{PROC}/{pid}").st_uid != uid:
                continue
            with open(f"{PROC}/{pid}/environ", "rb") as environ:
                variables = set(environ.read().split(b"\0"))
            if all(variable in variables for variable in wanted):
                found.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue  # ended meanwhile, or not readable
    return found


def pss_bytes(procs: Sequence[psutil.Process]) -> Optional[int]:
    """Proportional set size of the processes (shared pages split), None if unreadable."""
    total = 0
    try:
        for proc in procs:
            total += proc.memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        pass
    except (psutil.Error, AttributeError):
        return None
    return total


def files_bytes(paths: Sequence[Path]) -> int:
    """Summed size of the files (each once; missing ones count 0)."""
    total = 0
    for path in dict.fromkeys(paths):
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total
