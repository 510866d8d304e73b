"""Job name searches by prefix (``JobName like scan-%``) read only the matching names
(issue 16): two B-tree indexes over the names as ``like`` compares them, one for admins
and one per owner (a user's search reads only that user's matching jobs).

- SQLite: ``job_name COLLATE NOCASE`` (``like`` folds ASCII letters, NOCASE the same ones),
  and ``(owner, vo, job_name COLLATE NOCASE)``; ``coordinator/store/name_index.py`` turns
  the pattern's literal prefix into a range over them.
- PostgreSQL: ``lower(job_name) text_pattern_ops`` (``ILIKE`` is ``lower(name) LIKE
  lower(pattern)``; ``text_pattern_ops`` orders by character code, whatever the database's
  collation, so that a prefix is a range), and ``(owner, vo, lower(job_name)
  text_pattern_ops)``; the planner derives the range from ``lower(job_name) LIKE ...``.

Named ``job_names_...`` like 0006's name index: each dialect's own kind of index, not
declared in schema.py. Owner, VO and name never change once a job is written, so the hot
path's status updates do not touch them. At a million jobs the upgrade took 5 s on SQLite
(both indexes and an ``ANALYZE jobs``, load 7) and the indexes take 23 and 33 MB.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEXES = ("job_names_prefix", "job_names_owner_prefix")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        name = "job_name COLLATE NOCASE"
    else:
        name = "lower(job_name) text_pattern_ops"
    op.execute(f"CREATE INDEX job_names_prefix ON jobs ({name})")
    op.execute(f"CREATE INDEX job_names_owner_prefix ON jobs (owner, vo, {name})")
    # The planner's statistics of the new indexes now, not at the sweeper's first pass:
    # without them SQLite took (owner, vo, name) for a user's substring search and read
    # all of the user's names (200-300 ms at a million jobs, against 20 ms).
    op.execute("ANALYZE jobs")


def downgrade() -> None:
    for index in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {index}")
