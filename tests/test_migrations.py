"""The Alembic migrations build exactly the schema the models declare, and upgrade in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
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


def _plan_row(
    plan_id: int, feature: str, status: str, stage: int, applied_day: int | None
) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "id": plan_id,
        "experiment_id": "exp",
        "feature_key": feature,
        "created_at": datetime(2026, 11, 1, tzinfo=UTC),
        "strategy": "adaptation_aware",
        "status": status,
        "current_stage": stage,
        "stage_applied_at": None
        if applied_day is None
        else datetime(2026, 11, applied_day, tzinfo=UTC),
        "version": 3,
        "pending_stage": 0 if status == "reconciling" else None,
        "document": {"feature_key": feature},
    }


def test_0006_keeps_one_plan_per_feature_in_progress_and_audits_the_others(
    engine: sa.Engine,
) -> None:
    from rollout.models import RollbackPlan
    from rollout.store import list_plans_in_progress, load_plan, load_plan_events

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    columns = [c for c in RollbackPlan.__table__.columns if c.name != "mode"]  # type: ignore[attr-defined]
    table = sa.table("rollback_plans", *(sa.column(c.name, c.type) for c in columns))
    rows = [
        _plan_row(1, "chat-model", "active", 2, 1),
        _plan_row(2, "chat-model", "paused", 1, 5),  # applied last: GrowthBook serves it
        _plan_row(3, "chat-model", "reconciling", -1, None),
        _plan_row(4, "chat-model", "paused", -1, None),  # a paused draft: not started
        _plan_row(5, "chat-model", "completed", 3, 2),
        _plan_row(6, "search", "active", 0, 1),
    ]
    with engine.begin() as connection:
        connection.execute(table.insert(), rows)
    upgrade_schema(engine)

    plans = {i: load_plan(engine, i) for i in range(1, 7)}
    statuses = {i: str(plan.status) for i, plan in plans.items() if plan is not None}
    assert statuses == {
        1: "aborted",
        2: "paused",
        3: "aborted",
        4: "paused",
        5: "completed",
        6: "active",
    }
    assert [p.id for p in list_plans_in_progress(engine, "chat-model")] == [2]
    for aborted in (1, 3):
        plan = load_plan(engine, aborted)
        assert plan is not None and plan.version == 4 and plan.pending_stage is None
        [event] = load_plan_events(engine, aborted)
        assert (event.action, event.outcome, event.actor) == ("abort", "ok", "migration 0006")
        assert event.details["superseded_by"] == 2 and "plan 2" in event.details["reason"]
        assert event.details["after"]["status"] == "aborted"
    assert {str(plan.mode) for plan in plans.values() if plan is not None} == {"live"}

    # The index now refuses a second plan in progress, and only that.
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE rollback_plans SET status = 'draft' WHERE id = 4"))
        connection.execute(sa.text("UPDATE rollback_plans SET status = 'aborted' WHERE id = 5"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE rollback_plans SET status = 'active', current_stage = 0 WHERE id = 4")
        )
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE rollback_plans SET status = 'completed' WHERE id = 2"))
        connection.execute(
            sa.text("UPDATE rollback_plans SET status = 'active', current_stage = 0 WHERE id = 4")
        )
