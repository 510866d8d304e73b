"""The job counts rollup: what readers count from, and the folding of PostgreSQL's deltas.

On PostgreSQL the triggers on ``jobs`` (migration 0006) append +n/-n rows to
``job_count_deltas`` instead of updating ``job_counts``, so no writer waits on another for
a count; a count is the sum of both tables (``source``). ``compact`` folds the deltas into
``job_counts`` in one transaction, so a reader sees them either all in the deltas or all
in the counts, never both or neither. On SQLite the triggers keep ``job_counts`` itself
and the deltas table stays empty. See docs/scale-out.md ("Job counts without hot rows").
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, FromClause, literal_column, select, text, union_all

from coordinator.store.schema import ROLLUP_KEY, job_count_deltas, job_counts

logger = logging.getLogger(__name__)

COMPACT_LOCK_KEY = 0x6770_726F_6C6C_7570 & 0x7FFF_FFFF_FFFF_FFFF
"""The advisory lock of a compaction ("gprollup"): one replica folds at a time, the
others skip their turn instead of waiting."""

_KEY = ", ".join(ROLLUP_KEY)
# One statement: the deltas this transaction's snapshot sees are deleted and added to the
# counts (in key order, so two foldings could never deadlock on ``job_counts``' rows even
# without the advisory lock). Deltas written by transactions still open are not seen,
# not deleted, and folded next time.
_FOLD = text(
    f"WITH moved AS (DELETE FROM job_count_deltas RETURNING {_KEY}, n), "
    f"folded AS (INSERT INTO job_counts ({_KEY}, n) "
    f"SELECT {_KEY}, SUM(n) FROM moved GROUP BY {_KEY} HAVING SUM(n) <> 0 ORDER BY {_KEY} "
    f"ON CONFLICT ({_KEY}) DO UPDATE SET n = job_counts.n + EXCLUDED.n RETURNING 1) "
    "SELECT (SELECT COUNT(*) FROM moved), (SELECT COUNT(*) FROM folded)"
)


def source(conn: Connection) -> FromClause:
    """What to count from: ``job_counts``, plus the deltas not yet folded on PostgreSQL
    (same columns, several rows per key: readers ``SUM(n)``)."""
    if conn.dialect.name == "sqlite":
        return job_counts
    columns = [*ROLLUP_KEY, "n"]
    counts = select(*(job_counts.c[name] for name in columns))
    deltas = select(*(job_count_deltas.c[name] for name in columns))
    return union_all(counts, deltas).subquery("job_counts")


def compact(conn: Connection) -> int:
    """Fold the deltas into ``job_counts`` and forget the keys no job has any more;
    return how many deltas were folded (0 on SQLite, or when another replica is folding).
    The caller's transaction must be fresh: the deltas it folds are those committed when
    its first statement here starts."""
    if conn.dialect.name == "sqlite":
        return 0
    taken = conn.execute(
        select(literal_column(f"pg_try_advisory_xact_lock({COMPACT_LOCK_KEY})"))
    ).scalar()
    if not taken:
        return 0
    moved, folded = conn.execute(_FOLD).one()
    if moved:
        # Only compaction writes job_counts on PostgreSQL, and under the lock: no one waits.
        conn.execute(text("DELETE FROM job_counts WHERE n = 0"))
        logger.debug("job counts: folded %d deltas into %d keys", moved, folded)
    return int(moved)
