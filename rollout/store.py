"""Reads and writes of what the rollout stores: plans, their users' cohorts and events, API
tokens and idempotency records. Every surface reads plans through here, and no CLI command,
API route, dashboard page or report module runs a query of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from analytics.db import ensure_schema
from analytics.models import FeatureSnapshot
from analytics.store import load_exposed_feature
from rollout.documents import PlanDocument
from rollout.models import (
    IN_PROGRESS_STATUSES,
    ApiToken,
    IdempotencyRecord,
    PlanEvent,
    PlanMode,
    PlanStatus,
    PlanUser,
    RollbackPlan,
)


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
            mode=PlanMode(document.get("mode", PlanMode.live)),
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


def load_plan_document(engine: sa.Engine, plan_id: int) -> PlanDocument | None:
    """A plan's document (plan.json) alone."""
    with Session(engine) as session:
        document = session.exec(
            select(RollbackPlan.document).where(RollbackPlan.id == plan_id)
        ).first()
        return None if document is None else PlanDocument.from_json(document)


def list_plans(engine: sa.Engine, feature_key: str | None = None) -> list[RollbackPlan]:
    """Plans, newest first (of one feature, or all)."""
    ensure_schema(engine)
    query = select(RollbackPlan).order_by(col(RollbackPlan.id).desc())
    if feature_key is not None:
        query = query.where(RollbackPlan.feature_key == feature_key)
    with Session(engine) as session:
        return list(session.exec(query).all())


@dataclass(frozen=True)
class PlanState:
    """Where a stored plan stands (its columns, not its document)."""

    id: int
    experiment_id: str
    feature_key: str
    strategy: str
    status: str
    current_stage: int  # the last stage applied; -1 before the first
    pending_stage: int | None
    stage_applied_at: datetime | None
    created_at: datetime
    version: int
    mode: str = PlanMode.live  # live | record_only


def list_plan_states(
    engine: sa.Engine, *, experiment_id: str | None = None, feature_key: str | None = None
) -> list[PlanState]:
    """Plans' states, newest first (of one experiment or feature, or all), without their
    documents (which can be megabytes each)."""
    ensure_schema(engine)
    query = (
        select(RollbackPlan)
        .order_by(col(RollbackPlan.id).desc())
        .options(defer(RollbackPlan.document))  # type: ignore[arg-type]
    )
    if experiment_id is not None:
        query = query.where(RollbackPlan.experiment_id == experiment_id)
    if feature_key is not None:
        query = query.where(RollbackPlan.feature_key == feature_key)
    with Session(engine) as session:
        return [
            PlanState(
                id=int(plan.id or 0),
                experiment_id=plan.experiment_id,
                feature_key=plan.feature_key,
                strategy=plan.strategy,
                status=str(plan.status),
                current_stage=plan.current_stage,
                pending_stage=plan.pending_stage,
                stage_applied_at=plan.stage_applied_at,
                created_at=plan.created_at,
                version=plan.version,
                mode=str(plan.mode),
            )
            for plan in session.exec(query).all()
        ]


def find_feature_key(engine: sa.Engine, experiment_id: str) -> str | None:
    """The feature whose rule ran the experiment: its latest plan's, else as its exposures
    name it (None when neither does)."""
    with Session(engine) as session:
        planned = session.exec(
            select(RollbackPlan.feature_key)
            .where(RollbackPlan.experiment_id == experiment_id)
            .order_by(col(RollbackPlan.id).desc())
        ).first()
    return planned if planned is not None else load_exposed_feature(engine, experiment_id)


def find_user_cohort(
    engine: sa.Engine, user_id: str, feature_key: str | None = None
) -> tuple[int, str] | None:
    """(plan id, cohort) of the newest plan (of ``feature_key``) that holds ``user_id``."""
    query = (
        select(PlanUser.plan_id, PlanUser.cohort)
        .join(RollbackPlan, col(RollbackPlan.id) == col(PlanUser.plan_id))
        .where(PlanUser.user_id == user_id)
        .order_by(col(PlanUser.plan_id).desc())
    )
    if feature_key is not None:
        query = query.where(RollbackPlan.feature_key == feature_key)
    with Session(engine) as session:
        row = session.exec(query).first()
    return None if row is None else (int(row[0]), str(row[1]))


def list_events(
    engine: sa.Engine,
    *,
    plan_id: int | None = None,
    limit: int,
    offset: int = 0,
    before_id: int | None = None,
) -> list[PlanEvent]:
    """Plan events (of one plan, or of all), newest first: ``limit`` of them, after skipping
    the newest ``offset`` of those older than event ``before_id`` (when given)."""
    query = select(PlanEvent).order_by(col(PlanEvent.id).desc()).offset(offset).limit(limit)
    if before_id is not None:
        query = query.where(col(PlanEvent.id) < before_id)
    if plan_id is not None:
        query = query.where(PlanEvent.plan_id == plan_id)
    with Session(engine) as session:
        return list(session.exec(query).all())


def load_plan_members(engine: sa.Engine, plan_id: int, cohort: str | None = None) -> list[str]:
    """The user ids of a plan (or of one of its cohorts), sorted."""
    query = select(PlanUser.user_id).where(PlanUser.plan_id == plan_id)
    if cohort is not None:
        query = query.where(PlanUser.cohort == cohort)
    with Session(engine) as session:
        return sorted(session.exec(query).all())


@dataclass(frozen=True)
class PlanUpdate:
    """A compare-and-set of one plan's columns and the event that records it."""

    plan_id: int
    expected_version: int
    event: PlanEvent
    changes: Mapping[str, Any]


def update_plan_states(
    engine: sa.Engine, updates: Sequence[PlanUpdate]
) -> list[RollbackPlan] | None:
    """Apply every update (``changes`` to a plan's columns, its version up by one, its event
    recorded) in one transaction, in order, only if every plan is still at its
    ``expected_version``; return the updated plans, or None (nothing changed) when another
    writer got to one first. The partial unique index on plans in progress raises
    ``sqlalchemy.exc.IntegrityError`` (nothing changed) when an update would start a second
    plan of a feature."""
    with Session(engine) as session:
        for update in updates:
            values: dict[str, Any] = {"version": RollbackPlan.version + 1, **update.changes}
            changed = session.execute(
                sa.update(RollbackPlan)
                .where(
                    col(RollbackPlan.id) == update.plan_id,
                    col(RollbackPlan.version) == update.expected_version,
                )
                .values(**values)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                return None
            update.event.plan_id = update.plan_id
            session.add(update.event)
        session.commit()
        return [
            plan
            for update in updates
            if (plan := session.get(RollbackPlan, update.plan_id)) is not None
        ]


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
    updated = update_plan_states(engine, [PlanUpdate(plan_id, expected_version, event, changes)])
    return None if updated is None else updated[0]


def list_plans_in_progress(
    engine: sa.Engine, feature_key: str, *, exclude: int | None = None
) -> list[RollbackPlan]:
    """The feature's plans in progress (started, neither completed nor aborted; at most one
    once the schema's index holds), without their documents."""
    query = (
        select(RollbackPlan)
        .where(
            RollbackPlan.feature_key == feature_key,
            col(RollbackPlan.status).in_([str(s) for s in IN_PROGRESS_STATUSES]),
            sa.or_(
                col(RollbackPlan.status) != PlanStatus.paused,
                col(RollbackPlan.current_stage) >= 0,
            ),
        )
        .order_by(col(RollbackPlan.id))
        .options(defer(RollbackPlan.document))  # type: ignore[arg-type]
    )
    if exclude is not None:
        query = query.where(RollbackPlan.id != exclude)
    with Session(engine) as session:
        return list(session.exec(query).all())


@dataclass(frozen=True)
class ForcedAdvance:
    """A stage applied over the guardrails' decision: who forced it, when and why."""

    plan_id: int
    stage: int | None
    at: datetime
    actor: str  # the token name (or ``cli``) that forced it
    reason: str | None
    guardrails_action: str | None  # what the guardrails said then (hold or pause)
    event_id: int


def list_forced_advances(
    engine: sa.Engine, plan_id: int, *, limit: int | None = None
) -> list[ForcedAdvance]:
    """The plan's forced advances (stages applied with ``details.forced``), newest first."""
    query = (
        select(PlanEvent)
        .where(PlanEvent.plan_id == plan_id, PlanEvent.action == "apply", PlanEvent.outcome == "ok")
        .order_by(col(PlanEvent.id).desc())
    )
    with Session(engine) as session:
        found = []
        for event in session.exec(query):
            details = event.details or {}
            if not details.get("forced"):
                continue
            guardrails = details.get("guardrails") or {}
            found.append(
                ForcedAdvance(
                    plan_id=plan_id,
                    stage=event.stage,
                    at=event.at,
                    actor=str(details.get("forced_by") or event.actor),
                    reason=details.get("reason"),
                    guardrails_action=guardrails.get("action"),
                    event_id=int(event.id or 0),
                )
            )
            if limit is not None and len(found) >= limit:
                break
        return found


def load_growthbook_feature(engine: sa.Engine, feature_key: str) -> dict[str, Any] | None:
    """The latest fetched definition of a GrowthBook feature (``aftershock growthbook pull``),
    as the REST API returned it, or None when it was never pulled."""
    ensure_schema(engine)
    with Session(engine) as session:
        row = session.exec(
            select(FeatureSnapshot)
            .where(FeatureSnapshot.feature_key == feature_key, FeatureSnapshot.environment == "")
            .order_by(col(FeatureSnapshot.fetched_at).desc(), col(FeatureSnapshot.id).desc())
        ).first()
        return None if row is None else dict(row.definition)


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


# --- API tokens and idempotency records -------------------------------------------------------


def save_token(engine: sa.Engine, token: ApiToken) -> ApiToken:
    """Store a new API token (its hash only); return it with its id."""
    ensure_schema(engine)
    with Session(engine) as session:
        session.add(token)
        session.commit()
        session.refresh(token)
    return token


def mark_token_revoked(engine: sa.Engine, token_id: int, at: datetime) -> ApiToken | None:
    """Revoke a token (once: a revoked token keeps its first revocation time)."""
    ensure_schema(engine)
    with Session(engine) as session:
        row = session.get(ApiToken, token_id)
        if row is not None and row.revoked_at is None:
            row.revoked_at = at
            session.add(row)
            session.commit()
            session.refresh(row)
        return row


def list_tokens(engine: sa.Engine) -> list[ApiToken]:
    ensure_schema(engine)
    with Session(engine) as session:
        return list(session.exec(select(ApiToken).order_by(col(ApiToken.id))).all())


def find_token(engine: sa.Engine, token_hash: str) -> ApiToken | None:
    """The token with this SHA-256, revoked or not."""
    with Session(engine) as session:
        return session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()


def reserve_idempotency_key(
    engine: sa.Engine,
    record: IdempotencyRecord,
    *,
    in_progress: int,
    lease_expired_before: datetime,
) -> IdempotencyRecord | None:
    """Store ``record`` (an answer in progress) unless its (token, key) has one already;
    return the existing record, or None when this call reserved the key. Two concurrent
    callers cannot both reserve it: the primary key decides.

    A reservation still ``in_progress`` (its status code) made before
    ``lease_expired_before`` for the same request was left by a server that died during the
    work: this call takes it over (a compare-and-set, so of concurrent callers one does)."""
    key = (record.token_id, record.key)
    with Session(engine) as session:
        existing = session.get(IdempotencyRecord, key)
        if existing is None:
            session.add(record)
            try:
                session.commit()
                return None
            except sa.exc.IntegrityError:
                session.rollback()
                existing = session.get(IdempotencyRecord, key)
                assert existing is not None
        if existing.status_code != in_progress or existing.request_hash != record.request_hash:
            return existing
        taken = session.execute(
            sa.update(IdempotencyRecord)
            .where(
                col(IdempotencyRecord.token_id) == record.token_id,
                col(IdempotencyRecord.key) == record.key,
                col(IdempotencyRecord.status_code) == in_progress,
                col(IdempotencyRecord.created_at) < lease_expired_before,
            )
            .values(created_at=record.created_at)
        )
        session.commit()
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return None
        session.expire_all()
        return session.get(IdempotencyRecord, key) or existing


def renew_idempotency_key(
    engine: sa.Engine,
    token_id: int,
    key: str,
    *,
    in_progress: int,
    held_since: datetime,
    now: datetime,
) -> bool:
    """Extend a reservation still in progress that this holder made or last renewed at
    ``held_since`` (a compare-and-set: a holder whose lease was taken over cannot renew it);
    return whether it did."""
    with Session(engine) as session:
        renewed = session.execute(
            sa.update(IdempotencyRecord)
            .where(
                col(IdempotencyRecord.token_id) == token_id,
                col(IdempotencyRecord.key) == key,
                col(IdempotencyRecord.status_code) == in_progress,
                col(IdempotencyRecord.created_at) == held_since,
            )
            .values(created_at=now)
        )
        session.commit()
        return renewed.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def complete_idempotency_key(
    engine: sa.Engine, token_id: int, key: str, status_code: int, response: dict[str, Any]
) -> None:
    """Record the answer given under a reserved key, to replay on a retry."""
    with Session(engine) as session:
        record = session.get(IdempotencyRecord, (token_id, key))
        assert record is not None
        record.status_code = status_code
        record.response = response
        session.add(record)
        session.commit()


def forget_idempotency_key(engine: sa.Engine, token_id: int, key: str) -> None:
    """Drop a reserved key (its work failed), so a retry runs it again."""
    with Session(engine) as session:
        record = session.get(IdempotencyRecord, (token_id, key))
        if record is not None:
            session.delete(record)
            session.commit()
