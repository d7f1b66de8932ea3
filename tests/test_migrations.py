"""The Alembic migrations build exactly the schema the models declare, and upgrade in place."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from analytics.db import (
    HEAD_REVISION,
    alembic_config,
    ensure_schema,
    head_revision,
    schema_revision,
    upgrade_schema,
)


def test_migrations_match_the_models(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_the_declared_head_is_alembics_head(engine: sa.Engine) -> None:
    # ensure_schema recognises a current database by HEAD_REVISION: a new migration must
    # move it, or databases would never be upgraded to it.
    assert head_revision(engine) == HEAD_REVISION


def test_a_database_behind_head_is_upgraded_on_first_use(tmp_path: Path) -> None:
    from analytics.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0004")
    assert schema_revision(engine) == "0004"
    ensure_schema(engine)
    assert schema_revision(engine) == HEAD_REVISION


def test_schema_is_at_head_and_upgrade_is_idempotent(engine: sa.Engine) -> None:
    assert schema_revision(engine) == head_revision(engine)
    upgrade_schema(engine)
    ensure_schema(engine)
    assert schema_revision(engine) == head_revision(engine)


def test_an_existing_database_is_upgraded_in_place(engine: sa.Engine) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")  # a database from before the feature columns
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO interactions (event_id, user_id, timestamp, prompt) "
                "VALUES ('e1', 'u1', "
                + ("0" if engine.dialect.name == "sqlite" else "now()")
                + ", 'kept')"
            )
        )
    upgrade_schema(engine)
    with engine.connect() as connection:
        kept = connection.execute(sa.text("SELECT prompt, prompt_length FROM interactions")).all()
    assert [tuple(row) for row in kept] == [("kept", None)]
    assert schema_revision(engine) == head_revision(engine)
