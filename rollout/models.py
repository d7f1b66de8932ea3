"""SQLModel tables of the rollback: plans, their users' cohorts and events, the API's tokens
and idempotency records. One Alembic history (``analytics/migrations``) owns the whole schema."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from analytics.models import utc_now
from analytics.sqltypes import BigId, Identifier, JsonDocument, UtcTimestamp


class PlanStatus(StrEnum):
    draft = "draft"  # no stage applied yet
    active = "active"
    reconciling = "reconciling"  # a stage is being written to GrowthBook (``pending_stage``)
    paused = "paused"
    completed = "completed"
    aborted = "aborted"


# A plan is in progress from its first stage on until it completes or is aborted; at most one
# plan per feature may be, since every plan of a feature writes the same (owned) rules. A
# paused plan that never applied a stage (a paused draft) has not started and does not count.
IN_PROGRESS_STATUSES = (PlanStatus.active, PlanStatus.reconciling, PlanStatus.paused)
IN_PROGRESS_WHERE = (
    "status IN ('active', 'reconciling') OR (status = 'paused' AND current_stage >= 0)"
)
IN_PROGRESS_INDEX = "uq_rollback_plans_feature_in_progress"


class PlanMode(StrEnum):
    live = "live"  # each stage is written to GrowthBook; refused when it is not configured
    record_only = "record_only"  # stages are recorded, GrowthBook is never written


class RollbackPlanBase(SQLModel):
    experiment_id: str = Field(sa_type=Identifier, index=True)
    feature_key: str = Field(sa_type=Identifier, index=True)
    analysis_run_id: int | None = Field(default=None, foreign_key="analysis_runs.id")
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcTimestamp)
    strategy: str = Field(max_length=32)
    status: PlanStatus = Field(default=PlanStatus.draft, sa_type=sa.String(16))
    current_stage: int = -1  # the last stage applied; -1 before the first
    stage_applied_at: datetime | None = Field(default=None, sa_type=UtcTimestamp)
    version: int = 1  # bumped by every change of state, so writers can detect a race
    pending_stage: int | None = None  # the stage being written while ``reconciling``
    mode: PlanMode = Field(  # chosen when the plan is made
        default=PlanMode.live, sa_type=sa.String(16), sa_column_kwargs={"server_default": "live"}
    )


class RollbackPlan(RollbackPlanBase, table=True):
    """A staged rollback plan (plan.json in ``document``) and where its rollout stands."""

    __tablename__ = "rollback_plans"
    __table_args__ = (
        sa.Index(
            IN_PROGRESS_INDEX,
            "feature_key",
            unique=True,
            sqlite_where=sa.text(IN_PROGRESS_WHERE),
            postgresql_where=sa.text(IN_PROGRESS_WHERE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    document: dict[str, Any] = Field(sa_type=JsonDocument)


class PlanUser(SQLModel, table=True):
    """A user's rollback cohort in a plan: what the guardrails split and the API looks up."""

    __tablename__ = "plan_users"
    __table_args__ = (sa.Index("ix_plan_users_user", "user_id"),)

    plan_id: int = Field(foreign_key="rollback_plans.id", primary_key=True)
    user_id: str = Field(sa_type=Identifier, primary_key=True)
    cohort: str = Field(max_length=32)


class PlanEvent(SQLModel, table=True):
    """Something that happened to a plan: a stage applied, a guardrail decision, a refusal."""

    __tablename__ = "plan_events"
    __table_args__ = (sa.Index("ix_plan_events_plan_at", "plan_id", "at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    plan_id: int = Field(foreign_key="rollback_plans.id")
    at: datetime = Field(default_factory=utc_now, sa_type=UtcTimestamp)
    action: str = Field(max_length=32)
    stage: int | None = None
    actor: str = Field(default="cli", max_length=255)
    outcome: str = Field(default="ok", max_length=16)  # ok | refused | failed
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDocument)


class ApiTokenBase(SQLModel):
    name: str = Field(max_length=255)
    scopes: str = Field(max_length=64)  # comma-separated: read, ramp, admin
    prefix: str = Field(max_length=16)  # the token's first characters, to recognise it
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcTimestamp)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcTimestamp)


class ApiToken(ApiTokenBase, table=True):
    """A bearer token of the flag-ramp API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)


class IdempotencyRecord(SQLModel, table=True):
    """The answer given to a mutation under an ``Idempotency-Key``, replayed on a retry."""

    __tablename__ = "idempotency_records"

    token_id: int = Field(foreign_key="api_tokens.id", primary_key=True)
    key: str = Field(max_length=255, primary_key=True)
    method: str = Field(max_length=8)
    path: str = Field(max_length=1024)
    request_hash: str = Field(max_length=64)
    status_code: int
    response: dict[str, Any] = Field(sa_type=JsonDocument)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcTimestamp)
