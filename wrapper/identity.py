"""A uid of its own for each job, where the pilot runs as root.

Payloads running as the pilot's user can read everything the pilot can (its token file,
other jobs' work dirs) and signal or trace its processes. A pilot started as root can do
better, as HTCondor does with its slot users: the site gives it a range of otherwise unused
uids (``payload_uids: 61000-61099``), each running job gets one of them to itself (as uid and
gid, no other groups), its work dir (0700) is handed over to that uid, and the payload (or
the container runtime) is started as it. Two jobs never share a uid at the same time, so
they cannot read each other's files nor signal each other, and neither can read the
pilot's root-owned token file. Sites running several root pilots on one node give each a
range of its own.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Optional

from wrapper.errors import RuntimeFailure

logger = logging.getLogger(__name__)


def parse_uid_range(text: str) -> range:
    """``"61000-61099"`` (inclusive) as a range; ``""`` as an empty one."""
    text = text.strip()
    if not text:
        return range(0)
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise RuntimeFailure(
            f"payload_uids {text!r}: expected FIRST-LAST, e.g. 61000-61099"
        ) from None
    if not 0 < first <= last:
        raise RuntimeFailure(f"payload_uids {text!r}: expected 0 < FIRST <= LAST")
    return range(first, last + 1)


class UidPool:
    """The uids free for jobs now; thread-safe (jobs start and end in their own threads)."""

    def __init__(self, uids: range) -> None:
        self._free = list(uids)
        self._lock = threading.Lock()
        self.enabled = bool(uids) and os.geteuid() == 0
        if uids and not self.enabled:
            logger.warning("payload_uids is set but the pilot is not root: jobs run as its user")

    def take(self) -> Optional[int]:
        """A uid for one job, or None (no pool, or every uid in use: the caller waits)."""
        with self._lock:
            return self._free.pop(0) if self.enabled and self._free else None

    def give_back(self, uid: Optional[int]) -> None:
        if uid is not None:
            with self._lock:
                self._free.append(uid)

    def free(self) -> int:
        with self._lock:
            return len(self._free) if self.enabled else 0


def hand_over(workdir: Path, uid: int) -> None:
    """Make the work dir and everything in it ``uid``'s (links themselves, never followed)."""
    pending = [str(workdir)]  # iterative: a deep input tree cannot exhaust the recursion limit
    while pending:
        path = pending.pop()
        os.lchown(path, uid, uid)
        if os.path.isdir(path) and not os.path.islink(path):
            with os.scandir(path) as entries:
                pending.extend(entry.path for entry in entries)
