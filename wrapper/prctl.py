"""The two ``prctl(2)`` calls the worker side makes, through ctypes (stdlib only).

- ``PR_SET_DUMPABLE`` 0 on the pilot: its ``/proc/<pid>`` files (``environ``, ``mem``,
  ``fd``) become root's and ptrace is refused, so payloads running as the pilot's user
  cannot read the token out of its memory or environment.
- ``PR_SET_PDEATHSIG`` on the sentinel (``wrapper.sentinel``): a signal when its parent dies.
  The kernel sends it when the parent *thread* that forked the child exits, not the
  process: a child must be started from a thread that lives as long as the process (the
  pilot's main thread), or it is signalled as soon as that thread ends.

Elsewhere than Linux, or where a seccomp filter refuses ``prctl``, both return False and
the caller says what it could not do.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Optional

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def _libc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _prctl(option: int, value: int) -> Optional[int]:
    libc = _libc()
    if libc is None:
        return None
    result = int(libc.prctl(option, value, 0, 0, 0))
    return None if result == -1 else result


def set_dumpable(dumpable: bool) -> bool:
    """Make this process (not) dumpable; True when the kernel agreed."""
    return _prctl(PR_SET_DUMPABLE, 1 if dumpable else 0) is not None


def is_dumpable() -> Optional[bool]:
    result = _prctl(PR_GET_DUMPABLE, 0)
    return None if result is None else bool(result)


def die_with_parent(signum: int, parent_pid: int) -> bool:
    """Have ``signum`` sent to this process when its parent dies; False if that could not be
    arranged, or the parent (``parent_pid``) is already gone."""
    if _prctl(PR_SET_PDEATHSIG, signum) is None:
        return False
    return os.getppid() == parent_pid  # it may have died before the prctl
