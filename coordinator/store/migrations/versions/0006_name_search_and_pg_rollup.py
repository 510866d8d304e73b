"""Job name search by any substring, an index on the minor status, and the job counts
rollup on PostgreSQL (issue 16).

- SQLite: ``job_names``, an FTS5 table with the ``trigram`` tokenizer over ``jobs.job_name``
  (external content: it stores the index only), kept by triggers on ``jobs`` and built
  from the jobs already there. ``coordinator/store/name_index.py`` asks it for candidates.
- PostgreSQL: the ``pg_trgm`` extension (a trusted extension: the database's owner may
  create it) and a GIN trigram index on ``jobs.job_name``, which the planner uses for
  ``ILIKE`` itself; and the ``job_counts`` rollup SQLite got in 0003, with the counts of
  the jobs already there, kept without hot rows: the triggers append deltas to
  ``job_count_deltas`` (made on both databases, as ``schema.py`` declares it; SQLite's
  stays empty), which the sweeper folds into ``job_counts`` (coordinator/store/rollup.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ROLLUP_KEY = ("vo", "owner", "owner_group", "site", "status", "job_group")
KEY = ", ".join(ROLLUP_KEY)


def upgrade() -> None:
    op.create_index("ix_jobs_minor_status", "jobs", ["minor_status", "job_id"])
    op.create_table(
        "job_count_deltas",
        *(sa.Column(name, sa.Text(), nullable=False) for name in ROLLUP_KEY),
        sa.Column("n", sa.Integer(), nullable=False),
    )
    statements = _sqlite_ddl() if op.get_bind().dialect.name == "sqlite" else _postgresql_ddl()
    for statement in statements:
        op.execute(statement)


def _sqlite_ddl() -> list[str]:
    remove = (
        "INSERT INTO job_names (job_names, rowid, job_name) "
        "VALUES ('delete', OLD.job_id, OLD.job_name);"
    )
    add = "INSERT INTO job_names (rowid, job_name) VALUES (NEW.job_id, NEW.job_name);"
    return [
        # detail=none: only which jobs hold a trigram, not where (a third of the size),
        # columnsize=0: no token counts (for ranking, which we do not do);
        # candidates are checked against the pattern by the query itself.
        "CREATE VIRTUAL TABLE job_names USING fts5(job_name, content='jobs', "
        "content_rowid='job_id', tokenize='trigram', detail='none', columnsize=0)",
        f"CREATE TRIGGER job_names_insert AFTER INSERT ON jobs BEGIN {add} END",
        f"CREATE TRIGGER job_names_delete AFTER DELETE ON jobs BEGIN {remove} END",
        "CREATE TRIGGER job_names_update AFTER UPDATE OF job_name ON jobs "
        f"WHEN OLD.job_name IS NOT NEW.job_name BEGIN {remove} {add} END",
        "INSERT INTO job_names (job_names) VALUES ('rebuild')",
    ]


def _postgresql_ddl() -> list[str]:
    return [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE INDEX job_names_trgm ON jobs USING gin (job_name gin_trgm_ops)",
        *_postgresql_rollup(),
        "DELETE FROM job_counts",
        f"INSERT INTO job_counts ({KEY}, n) SELECT {KEY}, COUNT(*) FROM jobs GROUP BY {KEY}",
    ]


def _function(name: str, body: str) -> str:
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {body} RETURN NULL; END $$"
    )


def _postgresql_rollup() -> list[str]:
    """The triggers only append to ``job_count_deltas``, which has no key: a writer never
    waits on another for a count (an ``UPDATE job_counts`` would hold that key's row until
    commit, queueing every match of one owner's jobs on every replica behind it, and two
    writers taking two keys in opposite orders would deadlock).

    Inserts and deletes: once per statement, over its rows grouped by key, so that a
    parametric submission of 10,000 jobs appends one row, not 10,000. Updates: per row,
    and only when a key column changes (a heartbeat does not), a -1 and a +1. A
    statement-level update trigger cannot have a column list or a WHEN when it reads the
    transition tables, so it would capture every updated row of every heartbeat and match
    claim; measured in docs/scale-out.md ("Job counts without hot rows")."""
    new = ", ".join(f"NEW.{name}" for name in ROLLUP_KEY)
    old = ", ".join(f"OLD.{name}" for name in ROLLUP_KEY)
    changed = " OR ".join(f"OLD.{name} IS DISTINCT FROM NEW.{name}" for name in ROLLUP_KEY)
    append = f"INSERT INTO job_count_deltas ({KEY}, n)"
    return [
        _function(
            "job_counts_inserted",
            f"{append} SELECT {KEY}, COUNT(*) FROM new_rows GROUP BY {KEY};",
        ),
        _function(
            "job_counts_deleted",
            f"{append} SELECT {KEY}, -COUNT(*) FROM old_rows GROUP BY {KEY};",
        ),
        _function("job_counts_updated", f"{append} VALUES ({old}, -1), ({new}, 1);"),
        "CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS "
        "new_rows FOR EACH STATEMENT EXECUTE FUNCTION job_counts_inserted()",
        "CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS "
        "old_rows FOR EACH STATEMENT EXECUTE FUNCTION job_counts_deleted()",
        f"CREATE TRIGGER job_counts_update AFTER UPDATE OF {KEY} ON jobs FOR EACH ROW "
        f"WHEN ({changed}) EXECUTE FUNCTION job_counts_updated()",
    ]
