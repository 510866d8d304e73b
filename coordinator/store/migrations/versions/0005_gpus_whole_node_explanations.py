"""Matching you can reason about (issue 17): jobs and task queues ask for GPUs (count,
memory, capability, models), a whole node and a CPU score; pilots keep their GPUs, CPU
score, why they stopped and their last match request (``gridpilot explain``, ``pilots
--why``), found by VO and last contact.

Every new column has a server default that asks for nothing (no GPU, not the whole node,
any CPU score) or says nothing yet, so rows written before the upgrade keep their meaning.
``ADD COLUMN`` with a constant default is a plain ``ALTER TABLE`` on SQLite and PostgreSQL
alike: no table is copied.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _requirement_columns() -> list[sa.Column[object]]:
    """``schema.gpu_and_node_columns`` as of this revision."""
    return [
        sa.Column("gpus", sa.Integer(), server_default="0", nullable=False),
        sa.Column("gpu_memory_mb", sa.Integer(), server_default="0", nullable=False),
        sa.Column("gpu_capability", sa.String(length=32), server_default="", nullable=False),
        sa.Column("gpu_models", sa.Text(), server_default="[]", nullable=False),
        sa.Column("whole_node", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("min_cpu_score", sa.Float(), server_default="0", nullable=False),
    ]


def upgrade() -> None:
    for table in ("jobs", "task_queues"):
        for column in _requirement_columns():
            op.add_column(table, column)
    op.add_column(
        "pilots", sa.Column("stop_cause", sa.String(length=32), server_default="", nullable=False)
    )
    op.add_column("pilots", sa.Column("gpus", sa.Text(), server_default="[]", nullable=False))
    op.add_column("pilots", sa.Column("cpu_score", sa.Float(), server_default="0", nullable=False))
    op.add_column("pilots", sa.Column("last_match", sa.Text(), server_default="{}", nullable=False))
    op.create_index("ix_pilots_vo_last_seen", "pilots", ["vo", "last_seen"])
