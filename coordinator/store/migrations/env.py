"""Alembic's environment for the coordinator's schema: always run through
``coordinator.store.revisions``, which hands over an open connection."""

from __future__ import annotations

from alembic import context

from coordinator.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters a table by copying it (ALTER TABLE can do little there).
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
