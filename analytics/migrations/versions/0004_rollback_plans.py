"""rollback plans and growthbook experiments

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

from analytics.sqltypes import UtcTimestamp

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "experiment_snapshots",
        sa.Column(
            "experiment_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tracking_key",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("fetched_at", UtcTimestamp(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_id", "sha256", name="uq_experiment_snapshots_content"),
    )
    with op.batch_alter_table("experiment_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_experiment_snapshots_experiment_id"), ["experiment_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_experiment_snapshots_tracking_key"), ["tracking_key"], unique=False
        )

    op.create_table(
        "rollback_plans",
        sa.Column(
            "experiment_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "feature_key",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("analysis_run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcTimestamp(), nullable=False),
        sa.Column("strategy", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_stage", sa.Integer(), nullable=False),
        sa.Column("stage_applied_at", UtcTimestamp(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["analysis_run_id"],
            ["analysis_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rollback_plans", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rollback_plans_experiment_id"), ["experiment_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_rollback_plans_feature_key"), ["feature_key"], unique=False
        )

    op.create_table(
        "plan_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("at", UtcTimestamp(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=True),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["rollback_plans.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("plan_events", schema=None) as batch_op:
        batch_op.create_index("ix_plan_events_plan_at", ["plan_id", "at"], unique=False)

    op.create_table(
        "plan_users",
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column(
            "user_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("cohort", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["rollback_plans.id"],
        ),
        sa.PrimaryKeyConstraint("plan_id", "user_id"),
    )
    with op.batch_alter_table("plan_users", schema=None) as batch_op:
        batch_op.create_index("ix_plan_users_user", ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("plan_users", schema=None) as batch_op:
        batch_op.drop_index("ix_plan_users_user")

    op.drop_table("plan_users")
    with op.batch_alter_table("plan_events", schema=None) as batch_op:
        batch_op.drop_index("ix_plan_events_plan_at")

    op.drop_table("plan_events")
    with op.batch_alter_table("rollback_plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollback_plans_feature_key"))
        batch_op.drop_index(batch_op.f("ix_rollback_plans_experiment_id"))

    op.drop_table("rollback_plans")
    with op.batch_alter_table("experiment_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiment_snapshots_tracking_key"))
        batch_op.drop_index(batch_op.f("ix_experiment_snapshots_experiment_id"))

    op.drop_table("experiment_snapshots")
