"""The web portal's schema (issue 16): search indexes, the live event stream's table and
the job counts rollup, kept by triggers on SQLite (on PostgreSQL the rollup stays empty and
summaries count the jobs, as the portal's code expects).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROLLUP_KEY = ("vo", "owner", "owner_group", "site", "status", "job_group")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    big = sa.Integer() if sqlite else sa.BigInteger()
    op.create_index("ix_jobs_vo_owner_status", "jobs", ["vo", "owner", "status", "job_id"])
    op.create_index("ix_jobs_updated", "jobs", ["updated_at"])
    op.create_index("ix_jobs_created", "jobs", ["created_at"])
    op.create_index("ix_job_history_status_at", "job_history", ["status", "at"])
    op.create_table(
        "job_events",
        sa.Column("event_id", big, autoincrement=True, nullable=False),
        sa.Column("job_id", big, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("minor_status", sa.Text(), nullable=False),
        sa.Column("application_status", sa.Text(), nullable=False),
        sa.Column("stream", sa.String(length=16), nullable=False),
        sa.Column("offset", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_job_events_at", "job_events", ["at"])
    op.create_table(
        "job_counts",
        *(sa.Column(name, sa.Text(), nullable=False) for name in ROLLUP_KEY),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*ROLLUP_KEY),
    )
    if sqlite:
        for statement in _rollup_ddl():
            op.execute(statement)


def _rollup_ddl() -> list[str]:
    """The rollup's triggers and first counts, as release 0.1.0's successor made them."""
    key = ", ".join(ROLLUP_KEY)

    def add(row: str) -> str:
        values = ", ".join(f"{row}.{name}" for name in ROLLUP_KEY)
        return (
            f"INSERT INTO job_counts ({key}, n) VALUES ({values}, 1) "
            f"ON CONFLICT ({key}) DO UPDATE SET n = n + 1;"
        )

    def remove(row: str) -> str:
        where = " AND ".join(f"{name} = {row}.{name}" for name in ROLLUP_KEY)
        return f"UPDATE job_counts SET n = n - 1 WHERE {where};"

    changed = " OR ".join(f"OLD.{name} IS NOT NEW.{name}" for name in ROLLUP_KEY)
    return [
        f"CREATE TRIGGER IF NOT EXISTS job_counts_insert AFTER INSERT ON jobs "
        f"BEGIN {add('NEW')} END",
        f"CREATE TRIGGER IF NOT EXISTS job_counts_update AFTER UPDATE OF {key} ON jobs "
        f"WHEN {changed} BEGIN {remove('OLD')} {add('NEW')} END",
        f"CREATE TRIGGER IF NOT EXISTS job_counts_delete AFTER DELETE ON jobs "
        f"BEGIN {remove('OLD')} END",
        f"INSERT INTO job_counts ({key}, n) SELECT {key}, COUNT(*) FROM jobs GROUP BY {key}",
    ]
