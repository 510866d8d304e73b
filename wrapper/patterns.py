"""Which files a list of sandbox patterns selects in a directory tree.

Patterns are names or globs relative to the base directory: ``*.log``, ``out/**``, plain
names, directories (taken recursively). Absolute patterns and patterns with ``..`` select
nothing. Symlinked directories are never entered. The payload made the tree, so walking it
is bounded (``ScanLimits``: depth and entries) and never recursive.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import posixpath
import stat
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Optional

from wrapper.config import MAX_SCAN_ENTRIES, MAX_TREE_DEPTH
from wrapper.errors import OutputTreeTooLarge

logger = logging.getLogger(__name__)

_GLOB_CHARS = frozenset("*?[")


def inside(real_path: str, root_real: str) -> bool:
    """Whether an already resolved path is ``root_real`` or below it."""
    return real_path == root_real or real_path.startswith(root_real.rstrip("/") + "/")


@dataclasses.dataclass(frozen=True)
class ScanLimits:
    """How far one pattern's walk of a payload-made tree may go before the job is failed."""

    max_depth: int = MAX_TREE_DEPTH
    """Directory levels below the base directory."""
    max_entries: int = MAX_SCAN_ENTRIES
    """Entries (files, directories, links) seen by one pattern's walk."""


def _start(base_real: str, prefix: tuple[str, ...]) -> Optional[tuple[str, str]]:
    """The literal part of a pattern as (absolute path, kind) if every directory on the
    way is a real directory (never a link); None when it does not exist."""
    path = base_real
    for index, part in enumerate(prefix):
        path = os.path.join(path, part)
        kind = _kind(path)
        if kind == "dir" or (index == len(prefix) - 1 and kind in ("file", "link")):
            continue
        return None
    return path, _kind(path) if prefix else "dir"


def _scan(
    base_real: str, prefix: tuple[str, ...] = (), limits: ScanLimits = ScanLimits()
) -> list[tuple[str, str]]:
    """Entries at and under ``prefix`` as (relative posix name, kind), sorted, preorder.

    Kind is ``dir``, ``file``, ``link`` or ``other``; symlinked directories are not entered.
    Iterative (a payload's very deep tree cannot exhaust the recursion limit) and bounded
    by ``limits``: ``OutputTreeTooLarge`` past them.
    """
    start = _start(base_real, prefix)
    if start is None:
        return []
    entries: list[tuple[str, str]] = []
    pending: list[tuple[str, str, int]] = [(start[0], "/".join(prefix), len(prefix))]
    while pending:
        abs_path, rel, depth = pending.pop()
        kind = _kind(abs_path) if rel else "dir"
        if rel:
            entries.append((rel, kind))
            if len(entries) > limits.max_entries:
                raise OutputTreeTooLarge(f"more than {limits.max_entries} entries to walk")
        if kind != "dir":
            continue
        if depth >= limits.max_depth:
            raise OutputTreeTooLarge(f"a tree deeper than {limits.max_depth} directory levels")
        try:
            with os.scandir(abs_path) as listing:
                names = sorted((entry.name for entry in listing), reverse=True)
        except OSError as exc:
            logger.warning("cannot list %s: %s", abs_path, exc)
            continue
        pending.extend(
            (os.path.join(abs_path, name), posixpath.join(rel, name) if rel else name, depth + 1)
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
    """Glob match by path segment; ``**`` spans any number of segments (also none).

    The set of pattern positions reachable after each segment, so the cost is
    O(segments x pattern) and nothing recurses, however deep the path.
    """
    states = _past_stars({0}, pattern)
    for segment in path:
        moved = set()
        for i in states:
            if i == len(pattern):
                continue
            if pattern[i] == "**":
                moved.add(i)
            elif fnmatchcase(segment, pattern[i]):
                moved.add(i + 1)
        states = _past_stars(moved, pattern)
        if not states:
            return False
    return len(pattern) in states


def _past_stars(states: set[int], pattern: tuple[str, ...]) -> set[int]:
    """``states`` plus the positions after any ``**`` they stand on (matching nothing)."""
    result = set(states)
    pending = list(states)
    while pending:
        i = pending.pop()
        if i < len(pattern) and pattern[i] == "**" and i + 1 not in result:
            result.add(i + 1)
            pending.append(i + 1)
    return result


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


@dataclasses.dataclass
class Selection:
    chosen: dict[str, str] = dataclasses.field(default_factory=dict)
    """Entries to store as {name: kind} in pattern order without repeats (``dir``, ``file``
    or ``link``)."""
    per_pattern: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    refused: dict[str, str] = dataclasses.field(default_factory=dict)
    """Patterns whose walk went past the limits, with why (they select nothing)."""


def select(
    base_real: str, patterns: Sequence[str], skip: str, limits: ScanLimits = ScanLimits()
) -> Selection:
    """What ``patterns`` select under ``base_real``; ``skip`` names one entry never to select.

    Each pattern walks only below its literal start (``out/*.log`` lists ``out``), within
    ``limits``; one that goes past them is refused, the others still select.
    """
    result = Selection()
    chosen, per_pattern = result.chosen, result.per_pattern
    for pattern in patterns:
        parts = _pattern_parts(pattern)
        if parts is None:
            logger.warning("sandbox pattern %r refused: absolute or contains '..'", pattern)
            per_pattern[pattern] = []
            continue
        literal = tuple(itertools.takewhile(lambda part: not _GLOB_CHARS & set(part), parts))
        try:
            entries = [e for e in _scan(base_real, literal, limits) if e[0] != skip]
        except OutputTreeTooLarge as exc:
            logger.warning("sandbox pattern %r refused: %s", pattern, exc)
            result.refused[pattern] = str(exc)
            per_pattern[pattern] = []
            continue
        hits = [entries[i] for i in _expand(parts, entries) if entries[i][1] != "other"]
        per_pattern[pattern] = [name for name, _ in hits]
        for name, kind in hits:
            chosen.setdefault(name, kind)
    return result
