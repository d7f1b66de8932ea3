"""analysis runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

from analytics.sqltypes import UtcTimestamp

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "analysis_runs",
        sa.Column(
            "experiment_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("analysed_at", UtcTimestamp(), nullable=False),
        sa.Column("code_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "results",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("analysis_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analysis_runs_experiment_id"), ["experiment_id"], unique=False
        )

    op.create_table(
        "analysis_users",
        sa.Column("analysis_run_id", sa.Integer(), nullable=False),
        sa.Column(
            "user_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "variation",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("first_exposure", UtcTimestamp(), nullable=False),
        sa.Column("n_pre", sa.Integer(), nullable=False),
        sa.Column("n_post", sa.Integer(), nullable=False),
        sa.Column("adaptation_score", sa.Float(), nullable=True),
        sa.Column("adaptation_p", sa.Float(), nullable=True),
        sa.Column("adaptation_label", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_run_id"],
            ["analysis_runs.id"],
        ),
        sa.PrimaryKeyConstraint("analysis_run_id", "user_id"),
    )


def downgrade() -> None:

    op.drop_table("analysis_users")
    with op.batch_alter_table("analysis_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_runs_experiment_id"))

    op.drop_table("analysis_runs")
