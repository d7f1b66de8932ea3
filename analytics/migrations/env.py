"""Alembic environment: runs on the connection Aftershock hands it, or on the configured URL."""

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlmodel import SQLModel

# One history owns the whole database, so autogenerate must see every table: the analytics
# tables and the rollback's. This is the one import from analytics into rollout, on purpose
# (moving the history out of the installed package would lose it at run time).
import analytics.models  # noqa: F401  (registers the tables on SQLModel.metadata)
import rollout.models  # noqa: F401

config = context.config
target_metadata = SQLModel.metadata


def run_migrations(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    from analytics.settings import get_settings

    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = engine_from_config(
        {"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        run_migrations(conn)
