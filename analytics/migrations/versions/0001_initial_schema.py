"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

from analytics.sqltypes import UtcTimestamp

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "feature_snapshots",
        sa.Column(
            "feature_key",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("environment", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.Column("fetched_at", UtcTimestamp(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "feature_key", "environment", "sha256", name="uq_feature_snapshots_content"
        ),
    )
    op.create_table(
        "ingest_runs",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("file_name", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("compression", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("strict", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_inserted", sa.Integer(), nullable=False),
        sa.Column("rows_duplicate", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("rows_blank", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcTimestamp(), nullable=False),
        sa.Column("finished_at", UtcTimestamp(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rejects_path", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ingest_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingest_runs_sha256"), ["sha256"], unique=False)

    op.create_table(
        "exposures",
        sa.Column(
            "user_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("timestamp", UtcTimestamp(), nullable=False),
        sa.Column(
            "experiment_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "variation_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "feature_key",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("ingest_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ingest_run_id"],
            ["ingest_runs.id"],
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "user_id", "timestamp", "variation_id", name="pk_exposures"
        ),
    )
    op.create_table(
        "ingest_rejects",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ingest_run_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("column", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=True),
        sa.ForeignKeyConstraint(
            ["ingest_run_id"],
            ["ingest_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ingest_rejects", schema=None) as batch_op:
        batch_op.create_index("ix_ingest_rejects_run_line", ["ingest_run_id", "line"], unique=False)

    op.create_table(
        "interactions",
        sa.Column(
            "event_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("timestamp", UtcTimestamp(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("session_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("feedback", sa.SmallInteger(), nullable=True),
        sa.Column("complaint", sa.Boolean(), nullable=True),
        sa.Column("retry", sa.Boolean(), nullable=True),
        sa.Column("ingest_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ingest_run_id"],
            ["ingest_runs.id"],
        ),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.create_index("ix_interactions_user_time", ["user_id", "timestamp"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_index("ix_interactions_user_time")

    op.drop_table("interactions")
    with op.batch_alter_table("ingest_rejects", schema=None) as batch_op:
        batch_op.drop_index("ix_ingest_rejects_run_line")

    op.drop_table("ingest_rejects")
    op.drop_table("exposures")
    with op.batch_alter_table("ingest_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_runs_sha256"))

    op.drop_table("ingest_runs")
    op.drop_table("feature_snapshots")
