"""Job name search by any substring, an index on the minor status, and the job counts
rollup on PostgreSQL (issue 16).

- SQLite: ``job_names``, an FTS5 table with the ``trigram`` tokenizer over ``jobs.job_name``
  (external content: it stores the index only), kept by triggers on ``jobs`` and built
  from the jobs already there. ``coordinator/store/name_index.py`` asks it for candidates.
- PostgreSQL: the ``pg_trgm`` extension (a trusted extension: the database's owner may
  create it) and a GIN trigram index on ``jobs.job_name``, which the planner uses for
  ``ILIKE`` itself; and the ``job_counts`` triggers SQLite got in 0003, written in
  plpgsql, with the counts of the jobs already there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ROLLUP_KEY = ("vo", "owner", "owner_group", "site", "status", "job_group")
KEY = ", ".join(ROLLUP_KEY)


def upgrade() -> None:
    op.create_index("ix_jobs_minor_status", "jobs", ["minor_status", "job_id"])
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
    """Inserts and deletes: once per statement, over its rows grouped by key, so that a
    parametric submission of 10,000 jobs writes one row here, not 10,000 times the same
    one. Updates: per row, and only when a key column changes (a heartbeat does not)."""
    match = " AND ".join(f"c.{name} = d.{name}" for name in ROLLUP_KEY)
    new = ", ".join(f"NEW.{name}" for name in ROLLUP_KEY)
    where_old = " AND ".join(f"{name} = OLD.{name}" for name in ROLLUP_KEY)
    changed = " OR ".join(f"OLD.{name} IS DISTINCT FROM NEW.{name}" for name in ROLLUP_KEY)
    upsert = f"ON CONFLICT ({KEY}) DO UPDATE SET n = job_counts.n + EXCLUDED.n;"
    return [
        _function(
            "job_counts_inserted",
            f"INSERT INTO job_counts ({KEY}, n) SELECT {KEY}, COUNT(*) FROM new_rows "
            f"GROUP BY {KEY} ORDER BY {KEY} {upsert}",
        ),
        _function(
            "job_counts_deleted",
            f"UPDATE job_counts AS c SET n = c.n - d.n FROM (SELECT {KEY}, COUNT(*) AS n "
            f"FROM old_rows GROUP BY {KEY}) AS d WHERE {match};",
        ),
        _function(
            "job_counts_updated",
            f"UPDATE job_counts SET n = n - 1 WHERE {where_old}; "
            f"INSERT INTO job_counts ({KEY}, n) VALUES ({new}, 1) {upsert}",
        ),
        "CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS "
        "new_rows FOR EACH STATEMENT EXECUTE FUNCTION job_counts_inserted()",
        "CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS "
        "old_rows FOR EACH STATEMENT EXECUTE FUNCTION job_counts_deleted()",
        f"CREATE TRIGGER job_counts_update AFTER UPDATE OF {KEY} ON jobs FOR EACH ROW "
        f"WHEN ({changed}) EXECUTE FUNCTION job_counts_updated()",
    ]
