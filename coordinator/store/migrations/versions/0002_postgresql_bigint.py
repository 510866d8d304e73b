"""64-bit job ids, history entry ids and byte counts on PostgreSQL (its INTEGER is 32-bit);
nothing changes on SQLite, whose INTEGER is 64-bit already.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WIDENED = {
    "jobs": ("job_id",),
    "job_history": ("entry_id", "job_id"),
    "job_sandboxes": ("job_id",),
    "pilot_jobs": ("job_id",),
    "sandboxes": ("size_bytes",),
    "logs": ("size_bytes",),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in WIDENED.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())
    # The sequences behind the serial columns are INTEGER too.
    op.execute("ALTER SEQUENCE jobs_job_id_seq AS BIGINT")
    op.execute("ALTER SEQUENCE job_history_entry_id_seq AS BIGINT")
