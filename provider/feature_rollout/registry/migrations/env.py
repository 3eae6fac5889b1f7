"""Alembic environment: migrations run on a connection handed over by
:func:`feature_rollout.registry.migrate.upgrade`, inside its transaction (see that module)."""

from __future__ import annotations

from alembic import context

from feature_rollout.registry.migrate import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run registry migrations with `feature-rollout registry upgrade`, not the alembic command.")

context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
