"""Job names searched by any part (``JobName like %x%``) through a trigram index instead of
reading every job: SQLite's FTS5 table ``job_names`` (tokenizer ``trigram``) and
PostgreSQL's ``pg_trgm`` GIN index ``job_names_trgm``, both made and kept by
migration 0006.

On PostgreSQL the planner uses the GIN index for ``ILIKE`` by itself. On SQLite the index
is asked explicitly, and only to narrow: a job whose name matches the pattern holds every
trigram of the pattern's literal runs (case folded, as ``LIKE`` folds ASCII), so the jobs
holding some of those trigrams are a superset of the answer, and the ``LIKE`` itself still
decides. A pattern without a literal run of three characters (``%ab%``, ``a_c%``) has no
trigram: it reads the jobs as before.

Which trigrams: the index answers a trigram in time proportional to the jobs holding it,
and in a million jobs named ``prod-2026-...`` the trigrams of ``prod-`` are in all of
them: asking for all trigrams of ``prod-2026-g7`` would read a million entries five times
over to find twenty thousand jobs. So each trigram is first counted up to a limit
(``PROBE_LIMITS``, growing) and only those under it are asked for: the cost follows the
rarest trigram, not the most common.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

from sqlalchemy import ColumnElement, Connection, column, select, table, text

from coordinator.store.schema import jobs

LIKE_ESCAPE = "\\"
"""The escape character of ``like`` patterns on both databases (PostgreSQL's default)."""
PROBE_LIMITS = (1_000, 4_000, 16_000, 64_000)
"""Counting stops at these: a trigram of fewer jobs than the limit is asked for."""
job_names = table("job_names", column("rowid"), column("job_names"))
_PROBE = text(
    "SELECT COUNT(*) FROM (SELECT 1 FROM job_names WHERE job_names MATCH :q LIMIT :limit)"
)


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


def trigrams(pattern: str) -> list[str]:
    """The distinct trigrams of the pattern's literal runs, ASCII letters folded."""
    found: dict[str, None] = {}
    for run in literal_runs(pattern):
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
    """The pattern's trigrams that the fewest jobs hold (all of them when every one is
    common); empty when the pattern has none."""
    found = trigrams(pattern)
    for limit in PROBE_LIMITS if len(found) > 1 else ():
        held = {t: conn.scalar(_PROBE, {"q": _phrase(t), "limit": limit}) for t in found}
        rare = [trigram for trigram in found if (held[trigram] or 0) < limit]
        if rare:
            return rare
    return found


def candidates(conn: Connection, pattern: str) -> Optional[ColumnElement[bool]]:
    """A condition on ``jobs.job_id`` that every job whose name is ``LIKE pattern`` meets
    and few others do, or None where the index cannot narrow (PostgreSQL needs none)."""
    if conn.dialect.name != "sqlite":
        return None
    chosen = rare_trigrams(conn, pattern)
    if not chosen:
        return None
    match = job_names.c.job_names.op("MATCH")(_match(chosen))
    matching: Any = select(job_names.c.rowid).where(match)
    return jobs.c.job_id.in_(matching)
