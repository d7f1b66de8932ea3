"""Reads and writes of stored rollback plans, their users and events; every surface reads
plans through here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from analytics.db import ensure_schema
from rollout.models import PlanEvent, PlanUser, RollbackPlan


def save_plan(
    engine: sa.Engine,
    *,
    document: dict[str, Any],
    members: Mapping[str, Sequence[str]],
    analysis_run_id: int | None,
    event: PlanEvent | None = None,
) -> int:
    """Store a plan (plan.json), its users' cohorts and (optionally) the event that created
    it, in one transaction; return its id."""
    ensure_schema(engine)
    with Session(engine) as session:
        plan = RollbackPlan(
            experiment_id=document["experiment_id"],
            feature_key=document["feature_key"],
            analysis_run_id=analysis_run_id,
            strategy=document["strategy"],
            document=document,
        )
        session.add(plan)
        session.flush()
        assert plan.id is not None
        rows = [
            {"plan_id": plan.id, "user_id": user, "cohort": cohort}
            for cohort, users in members.items()
            for user in users
        ]
        if rows:
            session.connection().execute(PlanUser.__table__.insert(), rows)  # type: ignore[attr-defined]
        if event is not None:
            event.plan_id = plan.id
            session.add(event)
        session.commit()
        return plan.id


def load_plan(engine: sa.Engine, plan_id: int) -> RollbackPlan | None:
    ensure_schema(engine)
    with Session(engine) as session:
        return session.get(RollbackPlan, plan_id)


def load_plan_state(engine: sa.Engine, plan_id: int) -> RollbackPlan | None:
    """A plan's state without its document (which can be megabytes): for hot paths."""
    with Session(engine) as session:
        return session.exec(
            select(RollbackPlan)
            .where(RollbackPlan.id == plan_id)
            .options(defer(RollbackPlan.document))  # type: ignore[arg-type]
        ).first()


def load_plan_document(engine: sa.Engine, plan_id: int) -> dict[str, Any] | None:
    """A plan's document (plan.json) alone."""
    with Session(engine) as session:
        document = session.exec(
            select(RollbackPlan.document).where(RollbackPlan.id == plan_id)
        ).first()
        return None if document is None else dict(document)


def list_plans(engine: sa.Engine, feature_key: str | None = None) -> list[RollbackPlan]:
    """Plans, newest first (of one feature, or all)."""
    ensure_schema(engine)
    query = select(RollbackPlan).order_by(col(RollbackPlan.id).desc())
    if feature_key is not None:
        query = query.where(RollbackPlan.feature_key == feature_key)
    with Session(engine) as session:
        return list(session.exec(query).all())


def load_plan_members(engine: sa.Engine, plan_id: int, cohort: str | None = None) -> list[str]:
    """The user ids of a plan (or of one of its cohorts), sorted."""
    query = select(PlanUser.user_id).where(PlanUser.plan_id == plan_id)
    if cohort is not None:
        query = query.where(PlanUser.cohort == cohort)
    with Session(engine) as session:
        return sorted(session.exec(query).all())


def update_plan_state(
    engine: sa.Engine,
    plan_id: int,
    *,
    expected_version: int,
    event: PlanEvent,
    changes: Mapping[str, Any],
) -> RollbackPlan | None:
    """Apply ``changes`` to a plan's columns and record the event, atomically, only if the
    plan is still at ``expected_version`` (compare-and-set; the version goes up by one);
    return the updated plan, or None when another writer got there first."""
    values: dict[str, Any] = {"version": RollbackPlan.version + 1, **changes}
    with Session(engine) as session:
        changed = session.execute(
            sa.update(RollbackPlan)
            .where(col(RollbackPlan.id) == plan_id, col(RollbackPlan.version) == expected_version)
            .values(**values)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return None
        event.plan_id = plan_id
        session.add(event)
        session.commit()
        return session.get(RollbackPlan, plan_id)


def record_plan_event(engine: sa.Engine, event: PlanEvent) -> None:
    """Record an event that changes no state (a guardrail decision, a refused attempt)."""
    with Session(engine) as session:
        session.add(event)
        session.commit()


def load_plan_events(engine: sa.Engine, plan_id: int) -> list[PlanEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(PlanEvent).where(PlanEvent.plan_id == plan_id).order_by(col(PlanEvent.id))
            ).all()
        )
