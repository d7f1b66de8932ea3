"""plan mode, and at most one plan per feature in progress

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08

Plans get a ``mode`` (``live``: stages are written to GrowthBook; ``record_only``: recorded
without it). Plans made before it were applied through GrowthBook when it was configured, so
they are ``live``: never recorded silently again.

A partial unique index allows one plan per feature in progress (started, not completed or
aborted; a paused draft has not started). Every plan of a feature writes the same owned rules,
so where a database holds several, GrowthBook serves the one whose stage was applied last:
that one is kept, and the others are aborted here, each with an audited event naming it.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from analytics.sqltypes import UtcTimestamp

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of rollout.models' definitions as of this revision.
IN_PROGRESS_WHERE = (
    "status IN ('active', 'reconciling') OR (status = 'paused' AND current_stage >= 0)"
)
IN_PROGRESS_INDEX = "uq_rollback_plans_feature_in_progress"

plans = sa.table(
    "rollback_plans",
    sa.column("id", sa.Integer),
    sa.column("feature_key", sa.String),
    sa.column("status", sa.String),
    sa.column("current_stage", sa.Integer),
    sa.column("pending_stage", sa.Integer),
    sa.column("stage_applied_at", UtcTimestamp),
    sa.column("version", sa.Integer),
)
events = sa.table(
    "plan_events",
    sa.column("plan_id", sa.Integer),
    sa.column("at", UtcTimestamp),
    sa.column("action", sa.String),
    sa.column("stage", sa.Integer),
    sa.column("actor", sa.String),
    sa.column("outcome", sa.String),
    sa.column(
        "details", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    ),
)


def _abort_all_but_one_in_progress_plan_per_feature() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            plans.c.id,
            plans.c.feature_key,
            plans.c.status,
            plans.c.current_stage,
            plans.c.pending_stage,
            plans.c.stage_applied_at,
            plans.c.version,
        ).where(sa.text(IN_PROGRESS_WHERE))
    ).all()
    by_feature: dict[str, list[sa.Row]] = {}
    for row in rows:
        by_feature.setdefault(row.feature_key, []).append(row)
    now = datetime.now(UTC)
    for in_progress in by_feature.values():
        if len(in_progress) < 2:
            continue
        oldest = datetime.min.replace(tzinfo=UTC)
        kept = max(
            in_progress,
            key=lambda r: (
                r.stage_applied_at is not None,
                r.stage_applied_at.replace(tzinfo=r.stage_applied_at.tzinfo or UTC)
                if r.stage_applied_at is not None
                else oldest,
                r.id,
            ),
        )
        for row in in_progress:
            if row.id == kept.id:
                continue
            before = {
                "status": row.status,
                "current_stage": row.current_stage,
                "pending_stage": row.pending_stage,
                "version": row.version,
            }
            after = {**before, "status": "aborted", "pending_stage": None}
            after["version"] = row.version + 1
            connection.execute(
                plans.update()
                .where(plans.c.id == row.id)
                .values(status="aborted", pending_stage=None, version=row.version + 1)
            )
            connection.execute(
                events.insert().values(
                    plan_id=row.id,
                    at=now,
                    action="abort",
                    stage=row.current_stage,
                    actor="migration 0006",
                    outcome="ok",
                    details={
                        "before": before,
                        "after": after,
                        "reason": (
                            f"superseded by plan {kept.id}: at most one plan per feature may "
                            "be in progress, and GrowthBook serves the one applied last"
                        ),
                        "superseded_by": kept.id,
                    },
                )
            )


def upgrade() -> None:
    with op.batch_alter_table("rollback_plans", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), server_default="live", nullable=False)
        )
    _abort_all_but_one_in_progress_plan_per_feature()
    op.create_index(
        IN_PROGRESS_INDEX,
        "rollback_plans",
        ["feature_key"],
        unique=True,
        sqlite_where=sa.text(IN_PROGRESS_WHERE),
        postgresql_where=sa.text(IN_PROGRESS_WHERE),
    )


def downgrade() -> None:
    op.drop_index(IN_PROGRESS_INDEX, table_name="rollback_plans")
    with op.batch_alter_table("rollback_plans", schema=None) as batch_op:
        batch_op.drop_column("mode")
