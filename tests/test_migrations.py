"""The Alembic migrations build exactly the schema the models declare, and upgrade in place."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from analytics.db import alembic_config, ensure_schema, head_revision, schema_revision, upgrade_schema


def test_migrations_match_the_models(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_schema_is_at_head_and_upgrade_is_idempotent(engine: sa.Engine) -> None:
    assert schema_revision(engine) == head_revision(engine)
    upgrade_schema(engine)
    ensure_schema(engine)
    assert schema_revision(engine) == head_revision(engine)


def test_an_existing_database_is_upgraded_in_place(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO ingest_runs (kind, file_name, sha256, format, strict, status, rows_read, "
            "rows_inserted, rows_duplicate, rows_rejected, rows_blank, rows_done, started_at) "
            "VALUES ('interactions', 'kept.csv', 'x', 'csv', false, 'completed', 0, 0, 0, 0, 0, 0, "
            + ("0" if engine.dialect.name == "sqlite" else "now()") + ")"
        ))
    # Step the stamp back to the first revision and upgrade again: the data stays.
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.stamp(config, "0001")
    upgrade_schema(engine)
    with engine.connect() as connection:
        kept = connection.execute(sa.text("SELECT file_name FROM ingest_runs")).scalars().all()
    assert kept == ["kept.csv"]
    assert schema_revision(engine) == head_revision(engine)
