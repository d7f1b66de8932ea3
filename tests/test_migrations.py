"""The Alembic migrations build exactly the schema the models declare, and upgrade in place."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from analytics.db import (
    alembic_config,
    ensure_schema,
    head_revision,
    schema_revision,
    upgrade_schema,
)
from analytics.models import IngestRun


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
        connection.execute(
            sa.insert(IngestRun).values(
                kind="interactions",
                file_name="kept.csv",
                sha256="x",
                format="csv",
                status="completed",
            )
        )
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
