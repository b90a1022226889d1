"""Alembic environment: uses the engine handed over in config.attributes (batch mode for SQLite)."""

from alembic import context

import fhirbill.store.auth_tables  # noqa: F401  (registers the SMART tables on the metadata)
from fhirbill.store.tables import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
