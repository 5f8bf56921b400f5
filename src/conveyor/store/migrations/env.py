"""Alembic environment: runs on the connection that conveyor.store.migrate hands over.

Conveyor never runs Alembic from an ini file; `conveyor db upgrade` and the SQLite
self-migration both go through `conveyor.store.migrate`, which opens the transaction.
"""

from __future__ import annotations

from alembic import context

from conveyor.store.schema import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run Conveyor migrations with `conveyor db upgrade`, not alembic")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; batch mode does that for later revisions.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
