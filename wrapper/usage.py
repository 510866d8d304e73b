"""Measurements of a job's resource use that psutil's per-process view does not give.

Disk used below a directory, the payload's processes found by their environment, the
proportional memory (PSS) of a set of processes, the size of a few files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import psutil


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


def marked_processes(marker: Mapping[str, str]) -> list[psutil.Process]:
    """Processes of this user whose environment holds every ``marker`` variable's value."""
    uid, own = os.getuid(), os.getpid()
    found = []
    for proc in psutil.process_iter(["uids"]):
        try:
            uids = proc.info["uids"]
            if proc.pid == own or uids is None or uids.real != uid:
                continue
            env = proc.environ()
        except psutil.Error:
            continue
        if all(env.get(name) == value for name, value in marker.items()):
            found.append(proc)
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
