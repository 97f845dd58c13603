"""Alembic environment: runs on the connection certserver hands it (no URL in a file)."""

from __future__ import annotations

from alembic import context

from certserver.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
