"""Which files a list of sandbox patterns selects in a directory tree.

Patterns are names or globs relative to the base directory: ``*.log``, ``out/**``, plain
names, directories (taken recursively). Absolute patterns and patterns with ``..`` select
nothing. Symlinked directories are never entered.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import stat
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

_GLOB_CHARS = frozenset("*?[")


def inside(real_path: str, root_real: str) -> bool:
    """Whether an already resolved path is ``root_real`` or below it."""
    return real_path == root_real or real_path.startswith(root_real.rstrip("/") + "/")


def _scan(base_real: str) -> list[tuple[str, str]]:
    """Every entry under ``base_real`` as (relative posix name, kind), sorted, preorder.

    Kind is ``dir``, ``file``, ``link`` or ``other``; symlinked directories are not entered.
    Iterative, so a payload's very deep tree cannot exhaust the recursion limit.
    """
    entries: list[tuple[str, str]] = []
    pending: list[tuple[str, str]] = [(base_real, "")]
    while pending:
        abs_path, rel = pending.pop()
        if rel:
            kind = _kind(abs_path)
            entries.append((rel, kind))
            if kind != "dir":
                continue
        try:
            with os.scandir(abs_path) as listing:
                names = sorted((entry.name for entry in listing), reverse=True)
        except OSError as exc:
            logger.warning("cannot list %s: %s", abs_path, exc)
            continue
        pending.extend(
            (os.path.join(abs_path, name), posixpath.join(rel, name) if rel else name)
            for name in names
        )
    return entries


def _kind(abs_path: str) -> str:
    try:
        mode = os.lstat(abs_path).st_mode
    except OSError:
        return "other"  # vanished while we walked: nothing to store
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def relative_parts(name: str) -> Optional[tuple[str, ...]]:
    """The segments of a name relative to a base directory, without ``""`` and ``.``; None
    when the name could reach outside the base (absolute, or with ``..``).

    The one rule for names a job gives (StdOutput, StdError, OutputSandbox patterns)."""
    if name.startswith("/"):
        return None
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    return None if ".." in parts else parts


def path_inside(base: Path, name: str) -> Optional[Path]:
    """``base / name`` for a name that stays inside ``base`` and names something below it."""
    parts = relative_parts(name)
    return base.joinpath(*parts) if parts else None


def _pattern_parts(pattern: str) -> Optional[tuple[str, ...]]:
    """Normalised pattern segments (``()`` for the base itself), or None when the pattern
    could reach outside the base."""
    return relative_parts(pattern) if pattern else None


def _matches(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    """Glob match by path segment; ``**`` spans any number of segments (also none)."""

    @functools.cache
    def match_from(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(path)
        if pattern[i] == "**":
            return match_from(i + 1, j) or (j < len(path) and match_from(i, j + 1))
        return j < len(path) and fnmatchcase(path[j], pattern[i]) and match_from(i + 1, j + 1)

    return match_from(0, 0)


def _expand(parts: tuple[str, ...], entries: list[tuple[str, str]]) -> list[int]:
    """Indexes of the entries one pattern selects; a selected directory brings its subtree."""
    if not parts:
        return list(range(len(entries)))
    literal = not any(char in _GLOB_CHARS for part in parts for char in part)
    wanted = "/".join(parts)
    selected: list[int] = []
    subtree = ""
    for index, (name, kind) in enumerate(entries):
        if subtree and name.startswith(subtree):
            selected.append(index)
            continue
        subtree = ""
        hit = name == wanted if literal else _matches(parts, tuple(name.split("/")))
        if hit:
            selected.append(index)
            subtree = name + "/" if kind == "dir" else ""
    return selected


def select(
    base_real: str, patterns: Sequence[str], skip: str
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Entries to store as {name: kind} in pattern order without repeats, and each pattern's.

    Kind is ``dir``, ``file`` or ``link``; ``skip`` names one entry never to select.
    """
    entries = [(name, kind) for name, kind in _scan(base_real) if name != skip]
    chosen: dict[str, str] = {}
    per_pattern: dict[str, list[str]] = {}
    for pattern in patterns:
        parts = _pattern_parts(pattern)
        if parts is None:
            logger.warning("sandbox pattern %r refused: absolute or contains '..'", pattern)
            per_pattern[pattern] = []
            continue
        hits = [entries[i] for i in _expand(parts, entries) if entries[i][1] != "other"]
        per_pattern[pattern] = [name for name, _ in hits]
        for name, kind in hits:
            chosen.setdefault(name, kind)
    return chosen, per_pattern
