"""Pilots' request ids (issue 12): a match or report retried after a lost reply is answered
from ``pilot_requests`` instead of being applied twice.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pilot_requests",
        sa.Column("pilot_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("job_ids", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("pilot_id", "request_id"),
    )
    op.create_index("ix_pilot_requests_created", "pilot_requests", ["created_at"])
