"""Alembic's environment: runs the history on the connection that migrate() hands it."""

from alembic import context

from adapters.sqlalchemy.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
