"""Which jobs a command acts on, the way ``dirac-wms-*`` commands take them: ids as
arguments (``1 2 3`` or ``1,2,3``), ``-f FILE`` (ids separated by white space, ``-`` for
standard input) and ``-g JOBGROUP`` (the caller's jobs of that group)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from client.errors import UsageError
from client.textfiles import read_text

if TYPE_CHECKING:
    from client.api import UserClient

ID_FILE_HELP = "Also the job ids in this file (white-space separated; - reads standard input)"
GROUP_HELP = "Also every job of this JobGroup"


def parse_ids(words: Sequence[str], where: str = "") -> list[int]:
    ids: list[int] = []
    for word in words:
        for part in word.split(","):
            text = part.strip()
            if not text:
                continue
            if not (text.isascii() and text.isdigit()):
                origin = f" in {where}" if where else ""
                raise UsageError(f"{text!r}{origin} is not a job id (a whole number)")
            ids.append(int(text))
    return ids


def read_id_file(path: Path) -> list[int]:
    text = sys.stdin.read() if str(path) == "-" else read_text(path, "file of job ids")
    return parse_ids(text.split(), str(path))


def select_job_ids(
    words: Sequence[str],
    id_file: Optional[Path],
    group: Optional[str],
    client: Optional[UserClient] = None,
    statuses: Optional[str] = None,
) -> list[int]:
    """The job ids named, in the order given, each once; a group asks the coordinator."""
    ids = parse_ids(words)
    if id_file is not None:
        ids += read_id_file(id_file)
    if group:
        from client.api import MAX_LISTED

        if client is None:  # pragma: no cover - every caller with a group passes one
            raise UsageError("-g needs the coordinator")
        listed = client.list_jobs(group=group, statuses=statuses, limit=MAX_LISTED).jobs
        if not listed and not ids:
            raise UsageError(f"no jobs of yours in JobGroup {group!r}")
        ids += sorted(info.job_id for info in listed)
    if not ids:
        raise UsageError("no jobs named: give job ids, -f FILE or -g JOBGROUP")
    return list(dict.fromkeys(ids))
