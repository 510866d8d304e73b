"""Job names searched by any part (``JobName like %x%``) through a trigram index, and by
prefix (``JobName like scan-%``) through a B-tree, instead of reading every job.

Trigrams: SQLite's FTS5 table ``job_names`` (tokenizer ``trigram``) and PostgreSQL's
``pg_trgm`` GIN index ``job_names_trgm``, both made and kept by migration 0006.
Prefixes: the indexes ``job_names_prefix`` (every job) and ``job_names_owner_prefix``
(owner, VO, name: a user's own jobs), over the names as ``like`` compares them, made by
migration 0007.

On PostgreSQL the planner uses the GIN index for ``ILIKE`` by itself. On SQLite the index
is asked explicitly, and only to narrow: a job whose name matches the pattern holds every
trigram of the pattern's literal runs (case folded, as ``LIKE`` folds ASCII), so the jobs
holding some of those trigrams are a superset of the answer, and the ``LIKE`` itself still
decides. A pattern without a literal run of three characters (``%ab%``, ``a_c%``) has no
trigram: it reads the jobs as before.

A prefix: the names that match ``scan-%`` (or ``scan-%-7``, ``scan-_1``) all begin with
``scan-`` in any ASCII case, a range of the index ``job_name COLLATE NOCASE`` (NOCASE folds
the letters ``like`` folds) from ``scan-`` to ``scan.``, excluded. The range is only
asked, again, to narrow: ``LIKE`` decides. It is chosen over the trigrams unless it holds
``PREFIX_LIMIT`` jobs or more and a trigram past the prefix fewer than ``PROBE_LIMIT``
(``b%12345``). On PostgreSQL the narrowing is ``lower(job_name) LIKE lower(pattern)``,
which is what ``ILIKE`` means there (PostgreSQL's own definition in a multi-byte
encoding), written so that the planner takes the range of the prefix from the
``lower(job_name) text_pattern_ops`` indexes.

Which trigrams: FTS5 answers an ``AND`` of trigrams in about the time of the rarest one
plus a seek per candidate in each of the others (its doclists are B-trees: at a million
jobs, the seven trigrams of ``bench-g7-``, five of them in every job, take 15 ms, the two
rare ones alone 1.5 ms, one common one read whole 86 ms). Each trigram is first counted up
to ``PROBE_LIMIT`` (a fraction of a millisecond each): if some are under it, only those
are asked for (a handful of candidates), else all of them, and every trigram asked for
removes candidates that would otherwise be read from the jobs table to be checked. (An
earlier version counted up to 64,000 in growing rounds to find the rarest; at a million
jobs the counting cost four times what it saved.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from sqlalchemy import ColumnElement, Connection, and_, column, func, select, table, text

from coordinator.store.schema import jobs

LIKE_ESCAPE = "\\"
"""The escape character of ``like`` patterns on both databases (PostgreSQL's default)."""
PROBE_LIMIT = 1_000
"""Counting a trigram's jobs stops here: if some trigrams are under it, only those are
asked for."""
PREFIX_LIMIT = 64_000
"""A prefix of this many jobs or more gives way to a trigram under ``PROBE_LIMIT``."""
job_names = table("job_names", column("rowid"), column("job_names"))
_PROBE = text(
    "SELECT COUNT(*) FROM (SELECT 1 FROM job_names WHERE job_names MATCH :q LIMIT :limit)"
)
_NOCASE_NAME = jobs.c.job_name.collate("NOCASE")
_LAST_CHARACTER = chr(0x10FFFF)


def literal_runs(pattern: str) -> Iterator[str]:
    """The runs of literal characters of a ``LIKE`` pattern: ``%`` and ``_`` end a run,
    ``\\`` makes the next character literal."""
    run: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            run.append(char)
            escaped = False
        elif char == LIKE_ESCAPE:
            escaped = True
        elif char in "%_":
            yield "".join(run)
            run = []
        else:
            run.append(char)
    yield "".join(run)


def literal_prefix(pattern: str) -> str:
    """The literal text every name matching ``pattern`` begins with (in some case)."""
    return next(literal_runs(pattern))


def after_prefix(prefix: str) -> Optional[str]:
    """The first string in code point order after every string that begins with
    ``prefix``: its last character incremented (None if there is none, all U+10FFFF)."""
    kept = prefix.rstrip(_LAST_CHARACTER)
    if not kept:
        return None
    following = ord(kept[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters
        following = 0xE000
    return kept[:-1] + chr(following)


def prefix_range(pattern: str) -> Optional[ColumnElement[bool]]:
    """SQLite: the range of ``job_name COLLATE NOCASE`` holding every name that matches
    ``pattern``, or None if the pattern begins with a wildcard. NOCASE compares the UTF-8
    bytes with ASCII letters folded, which orders as the code points of the folded text."""
    prefix = literal_prefix(pattern)
    if not prefix or "\x00" in prefix:  # SQLite's text functions stop at a NUL
        return None
    low = prefix.translate(_ASCII_LOWER)
    condition = low <= _NOCASE_NAME
    high = after_prefix(low)
    return condition if high is None else and_(condition, high > _NOCASE_NAME)


def trigrams(pattern: str) -> list[str]:
    """The distinct trigrams of the pattern's literal runs, ASCII letters folded."""
    return _trigrams(literal_runs(pattern))


def _trigrams(runs: Iterable[str]) -> list[str]:
    found: dict[str, None] = {}
    for run in runs:
        folded = run.translate(_ASCII_LOWER)
        for start in range(len(folded) - 2):
            trigram = folded[start : start + 3]
            if "\x00" not in trigram:
                found[trigram] = None
    return list(found)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _phrase(trigram: str) -> str:
    return '"' + trigram.replace('"', '""') + '"'


def _match(chosen: list[str]) -> str:
    return " AND ".join(_phrase(trigram) for trigram in chosen)


def rare_trigrams(conn: Connection, pattern: str) -> list[str]:
    """The pattern's trigrams that fewer than ``PROBE_LIMIT`` jobs hold, or all of them
    when every one is common; empty when the pattern has none."""
    found = trigrams(pattern)
    return _rare(conn, found) or found


def _rare(conn: Connection, found: list[str]) -> list[str]:
    """Those of ``found`` held by fewer jobs than ``PROBE_LIMIT``; empty if every one is
    common (or there is only one: nothing to choose)."""
    if len(found) < 2:
        return []
    held = {t: conn.scalar(_PROBE, {"q": _phrase(t), "limit": PROBE_LIMIT}) for t in found}
    return [trigram for trigram in found if (held[trigram] or 0) < PROBE_LIMIT]


def _held(conn: Connection, condition: ColumnElement[bool], limit: int) -> int:
    """How many jobs meet ``condition``, counted up to ``limit``."""
    first = select(jobs.c.job_id).where(condition).limit(limit).subquery()
    return int(conn.scalar(select(func.count()).select_from(first)) or 0)


@dataclasses.dataclass(frozen=True)
class Narrowing:
    """What an index says of a ``like``: every matching job meets ``condition``."""

    condition: Optional[ColumnElement[bool]]
    """None: the database's planner asks its trigram index itself (PostgreSQL)."""
    by_trigrams: bool
    """Trigram candidates, each read from the jobs table to be checked; else a range of a
    B-tree that holds the name (and, per owner, owner and VO) itself."""


def candidates(
    conn: Connection, pattern: str, *, prefix_limit: int = PREFIX_LIMIT
) -> Optional[Narrowing]:
    """A condition that every job whose name is ``LIKE pattern`` meets and few others do,
    or None where no index narrows (a pattern with neither a prefix nor a trigram). A
    prefix of ``prefix_limit`` jobs or more gives way to a rarer trigram, if any."""
    if conn.dialect.name != "sqlite":
        if literal_prefix(pattern):
            return Narrowing(func.lower(jobs.c.job_name).like(func.lower(pattern)), False)
        # The planner asks the GIN index for ILIKE by itself.
        return Narrowing(None, True) if trigrams(pattern) else None
    found = trigrams(pattern)
    by_prefix = prefix_range(pattern)
    if by_prefix is not None:
        # Trigrams past the prefix (b%12345) may be rarer than the prefix is.
        beyond = set(found) - set(_trigrams([literal_prefix(pattern)]))
        if not beyond or _held(conn, by_prefix, prefix_limit) < prefix_limit:
            return Narrowing(by_prefix, False)
        chosen = _rare(conn, found)
        if not chosen:
            return Narrowing(by_prefix, False)
    else:
        chosen = _rare(conn, found) or found
        if not chosen:
            return None
    match = job_names.c.job_names.op("MATCH")(_match(chosen))
    matching: Any = select(job_names.c.rowid).where(match)
    return Narrowing(jobs.c.job_id.in_(matching), True)
